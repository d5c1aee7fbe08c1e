//! A load generator for the scoring service and for any KServe v2 server, over a few
//! HTTP/2 connections, for a fixed time after a warm-up. Rows come from a model package's
//! golden examples. Two ways to load:
//!
//! - closed loop (default): N callers, each sending its next request as soon as the
//!   previous one is answered; it finds the peak throughput, but a slow answer also delays
//!   the requests behind it, so the tail it reports is too short (coordinated omission);
//! - open loop (`rate`): requests are due at a fixed rate whatever the answers do, at most
//!   `concurrency` in flight, and each latency is measured from the time the request was
//!   due, not from when it could be sent (as wrk2 and ghz `--rps` do). Requests that could
//!   not leave on time are counted as behind schedule.
//!
//! Where the time went comes from the server's own timing in each answer: time in its
//! batcher queue, scoring the batch, and the rest of the latency outside the batcher.

use anyhow::Context;
use liveprofile_client::inference::{self as pb, grpc_inference_service_client::GrpcInferenceServiceClient};
use liveprofile_client::v1::{self, scoring_client::ScoringClient};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Which API the load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `liveprofile.v1.Scoring/ScoreTags`.
    Tags,
    /// `liveprofile.v1.Scoring/ScoreConversion`.
    Conversion,
    /// `inference.GRPCInferenceService/ModelInfer` (raw tensor contents).
    Kserve,
}

impl Protocol {
    /// Every protocol with its name.
    pub const ALL: [(&'static str, Protocol); 3] =
        [("tags", Protocol::Tags), ("conversion", Protocol::Conversion), ("kserve", Protocol::Kserve)];
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Protocol::ALL.iter().find(|(name, _)| *name == s).map(|(_, p)| *p).ok_or_else(|| {
            let names: Vec<&str> = Protocol::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown protocol {s:?} (one of: {})", names.join(", "))
        })
    }
}

/// Server address when none is given.
pub const DEFAULT_TARGET: &str = "127.0.0.1:50051";
/// Rows per request.
pub const DEFAULT_BATCH: usize = 1;
/// Concurrent callers.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// HTTP/2 connections the callers share.
pub const DEFAULT_CONNECTIONS: usize = 2;
/// Measured seconds.
pub const DEFAULT_SECONDS: f64 = 10.0;
/// Warm-up seconds.
pub const DEFAULT_WARMUP: f64 = 2.0;

/// What a load run sends, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server address (host:port).
    pub target: String,
    /// API to call.
    pub protocol: Protocol,
    /// Model name (default: user_tags for tags, conversion for conversion; required for kserve).
    pub model: Option<String>,
    /// Package folder whose golden rows are sent (default `models/<model>/1`).
    pub package: Option<PathBuf>,
    /// Rows (users or candidates) per request.
    pub batch: usize,
    /// Concurrent callers.
    pub concurrency: usize,
    /// HTTP/2 connections shared by the callers.
    pub connections: usize,
    /// Measured time, seconds.
    pub seconds: f64,
    /// Warm-up before measuring, seconds.
    pub warmup: f64,
    /// A label for the report (e.g. the server's name).
    pub label: String,
    /// Platform sent with each row (tags and conversion), so that experiments targeting
    /// it answer; empty for none.
    pub platform: String,
    /// Category sent with each row (tags and conversion); empty for none.
    pub category: String,
    /// Distinct user ids the rows cycle through (`load-0` ...), so that experiment
    /// exposures are first logged and then found; `None`: the same ids in every request.
    pub users: Option<u64>,
    /// Requests per second of an open-loop run (`concurrency` caps those in flight);
    /// `None`: closed loop.
    pub rate: Option<f64>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: DEFAULT_TARGET.to_owned(),
            protocol: Protocol::Tags,
            model: None,
            package: None,
            batch: DEFAULT_BATCH,
            concurrency: DEFAULT_CONCURRENCY,
            connections: DEFAULT_CONNECTIONS,
            seconds: DEFAULT_SECONDS,
            warmup: DEFAULT_WARMUP,
            label: String::new(),
            platform: String::new(),
            category: String::new(),
            users: None,
            rate: None,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Label given.
    pub label: String,
    /// API.
    pub protocol: Protocol,
    /// Model.
    pub model: String,
    /// Rows per request.
    pub batch: usize,
    /// Concurrent callers (closed loop), or the cap on requests in flight (open loop).
    pub concurrency: usize,
    /// Requests per second asked of an open-loop run; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Open loop: requests sent more than 1 ms after they were due (the cap on requests in
    /// flight held them back); their latency counts from the time they were due.
    pub behind_schedule: u64,
    /// Open loop: how late the measured requests left, from the time each was due to the
    /// time the generator's runtime started sending it (the generator's own pacing and
    /// scheduling, which every latency includes); `None` for a closed loop. Its p99 is the
    /// floor of the latency p99 this generator can measure on the machine it runs on.
    pub departure: Option<Departure>,
    /// Requests answered in the measured time.
    pub requests: u64,
    /// Requests failed in the measured time.
    pub errors: u64,
    /// First error message seen, if any.
    pub first_error: Option<String>,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Rows per second.
    pub rows_per_s: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Where the time of the answered requests went, from the server's own timing in each
    /// answer (liveprofile's v1 `timing` and KServe `queue_us` / `compute_us` parameters);
    /// `None` when no answer carried it (another KServe server).
    pub server_time: Option<ServerTime>,
}

/// Percentiles of the parts of a request's latency, microseconds. Each part's percentile is
/// taken over the requests on its own, so the parts of one percentile need not add up.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTime {
    /// Answers that carried the server's timing.
    pub answers: u64,
    /// In the server's batcher queue, until the request's batch started (the batch wait
    /// included).
    pub queue_p50_us: f64,
    /// 99th percentile of the queue time.
    pub queue_p99_us: f64,
    /// Scoring the batch the request was in.
    pub compute_p50_us: f64,
    /// 99th percentile of the compute time.
    pub compute_p99_us: f64,
    /// The rest of the latency: the network both ways, decoding, validating and encoding
    /// in the server, the runtimes' scheduling on both sides, and in an open loop any time
    /// the request waited to leave after it was due.
    pub outside_p50_us: f64,
    /// 99th percentile of the rest.
    pub outside_p99_us: f64,
}

/// How late the requests of an open loop left, and how long their answers took from then,
/// microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Departure {
    /// Median lateness (due -> sending).
    pub p50_us: f64,
    /// 99th percentile of the lateness.
    pub p99_us: f64,
    /// 99.9th percentile of the lateness.
    pub p999_us: f64,
    /// Largest lateness.
    pub max_us: f64,
    /// Median latency of the answered requests from the time each left (sending -> answer):
    /// what a caller that sends on time waits. The report's own percentiles, from the time
    /// each request was due, are the measure of record; these set the generator's share
    /// apart.
    pub answered_p50_us: f64,
    /// 99th percentile of the latency from the time each request left.
    pub answered_p99_us: f64,
    /// 99.9th percentile of the latency from the time each request left.
    pub answered_p999_us: f64,
}

/// The server's own timing of one answer, microseconds.
#[derive(Debug, Clone, Copy)]
struct Timed {
    queue_us: u64,
    compute_us: u64,
}

/// The `p`th percentile (0-100) of sorted values (nearest rank), NaN when there are none.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)])
}

enum Call {
    Tags(v1::ScoreTagsRequest),
    Conversion(v1::ScoreConversionRequest),
    Kserve(pb::ModelInferRequest),
}

fn build_call(args: &LoadConfig, model: &str) -> anyhow::Result<Call> {
    let package = args.package.clone().unwrap_or_else(|| PathBuf::from("models").join(model).join("1"));
    let read = |f: &str| -> anyhow::Result<serde_json::Value> {
        let path = package.join(f);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let manifest = read("manifest.json")?;
    let golden = read("golden.json")?;
    let input = manifest["inputs"][0]["name"].as_str().context("manifest has no input name")?;
    let hash = manifest["feature_schema"]["hash"].as_str().unwrap_or_default().to_owned();
    let examples: Vec<Vec<f32>> = golden["inputs"][input]
        .as_array()
        .context("golden file has no rows")?
        .iter()
        .map(|r| r.as_array().map(|v| v.iter().filter_map(|x| x.as_f64()).map(|x| x as f32).collect()))
        .collect::<Option<_>>()
        .context("golden rows are not arrays of numbers")?;
    anyhow::ensure!(!examples.is_empty() && args.batch > 0, "no rows to send");
    let rows: Vec<&Vec<f32>> = (0..args.batch).map(|i| &examples[i % examples.len()]).collect();
    let dense = |r: &Vec<f32>| v1::Features {
        values: Some(v1::features::Values::Dense(v1::DenseFeatures { values: r.clone() })),
    };
    Ok(match args.protocol {
        Protocol::Tags => Call::Tags(v1::ScoreTagsRequest {
            model: model.to_owned(),
            schema_hash: hash,
            users: rows
                .iter()
                .enumerate()
                .map(|(i, r)| v1::UserFeatures {
                    user_id: format!("load-{i}"),
                    features: Some(dense(r)),
                    platform: args.platform.clone(),
                    category: args.category.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        Protocol::Conversion => Call::Conversion(v1::ScoreConversionRequest {
            model: model.to_owned(),
            schema_hash: hash,
            candidates: rows
                .iter()
                .enumerate()
                .map(|(i, r)| v1::ConversionCandidate {
                    user_id: format!("load-{i}"),
                    room_id: "room".to_owned(),
                    features: Some(dense(r)),
                    platform: args.platform.clone(),
                    category: args.category.clone(),
                })
                .collect(),
            ..Default::default()
        }),
        Protocol::Kserve => {
            let width = rows[0].len();
            let raw: Vec<u8> = rows.iter().flat_map(|r| r.iter().flat_map(|v| v.to_le_bytes())).collect();
            Call::Kserve(pb::ModelInferRequest {
                model_name: model.to_owned(),
                inputs: vec![pb::model_infer_request::InferInputTensor {
                    name: input.to_owned(),
                    datatype: "FP32".to_owned(),
                    shape: vec![rows.len() as i64, width as i64],
                    ..Default::default()
                }],
                raw_input_contents: vec![raw],
                ..Default::default()
            })
        }
    })
}

/// Runs the load and returns the report.
pub async fn run(args: LoadConfig) -> anyhow::Result<LoadReport> {
    let model = match (&args.model, args.protocol) {
        (Some(m), _) => m.clone(),
        (None, Protocol::Tags) => "user_tags".to_owned(),
        (None, Protocol::Conversion) => "conversion".to_owned(),
        (None, Protocol::Kserve) => anyhow::bail!("--model is required with --protocol kserve"),
    };
    let call = Arc::new(build_call(&args, &model)?);
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(format!("http://{}", args.target))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.target))?;
        channels.push(channel);
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(args.seconds);
    let ids = UserIds { count: args.users.filter(|&n| n > 0), next: Arc::new(AtomicU64::new(0)) };
    let window = Window { measure_from, stop_at };
    let (tally, behind_schedule) = match args.rate {
        None => closed_loop(&call, &channels, args.concurrency.max(1), &ids, window).await?,
        Some(rate) => {
            anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be a positive number of requests per second");
            open_loop(&call, &channels, rate, args.concurrency.max(1), &ids, start, window).await?
        }
    };
    let server_time = tally.server_time();
    let Tally { latencies: mut all, errors, first_error, mut late, mut from_departure, .. } = tally;
    late.sort_unstable();
    from_departure.sort_unstable();
    let departure = args.rate.map(|_| Departure {
        p50_us: percentile(&late, 50.0),
        p99_us: percentile(&late, 99.0),
        p999_us: percentile(&late, 99.9),
        max_us: late.last().map_or(f64::NAN, |v| f64::from(*v)),
        answered_p50_us: percentile(&from_departure, 50.0),
        answered_p99_us: percentile(&from_departure, 99.0),
        answered_p999_us: percentile(&from_departure, 99.9),
    });
    all.sort_unstable();
    let pct = |p: f64| percentile(&all, p);
    let requests = all.len() as u64;
    Ok(LoadReport {
        label: args.label.clone(),
        protocol: args.protocol,
        model,
        batch: args.batch,
        concurrency: args.concurrency,
        rate: args.rate,
        behind_schedule,
        departure,
        requests,
        errors,
        first_error,
        requests_per_s: requests as f64 / args.seconds,
        rows_per_s: (requests as f64 * args.batch as f64) / args.seconds,
        p50_us: pct(50.0),
        p99_us: pct(99.0),
        p999_us: pct(99.9),
        max_us: all.last().map_or(f64::NAN, |v| f64::from(*v)),
        server_time,
    })
}

/// The measured part of a run: answers that arrive in it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    measure_from: Instant,
    stop_at: Instant,
}

/// The user ids requests cycle through, if any.
#[derive(Debug, Clone)]
struct UserIds {
    count: Option<u64>,
    next: Arc<AtomicU64>,
}

impl UserIds {
    fn next(&self) -> Option<String> {
        self.count.map(|n| format!("load-{}", self.next.fetch_add(1, Ordering::Relaxed) % n))
    }
}

/// The clients of one connection.
#[derive(Clone)]
struct Clients {
    scoring: ScoringClient<Channel>,
    kserve: GrpcInferenceServiceClient<Channel>,
}

impl Clients {
    fn new(channel: Channel) -> Self {
        Clients {
            scoring: ScoringClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            kserve: GrpcInferenceServiceClient::new(channel).max_decoding_message_size(64 << 20),
        }
    }

    /// Sends one request (with fresh user ids when the run cycles through users); the
    /// server's timing of the answer, when it gives one.
    async fn send(&mut self, call: &Call, ids: &UserIds) -> Result<Option<Timed>, tonic::Status> {
        let v1_timing = |t: Option<v1::Timing>| t.map(|t| Timed { queue_us: t.queue_us, compute_us: t.compute_us });
        match call {
            Call::Tags(r) => {
                let mut r = r.clone();
                if ids.count.is_some() {
                    r.users.iter_mut().for_each(|u| u.user_id = ids.next().unwrap_or_default());
                }
                self.scoring.score_tags(r).await.map(|a| v1_timing(a.into_inner().timing))
            }
            Call::Conversion(r) => {
                let mut r = r.clone();
                if ids.count.is_some() {
                    r.candidates.iter_mut().for_each(|c| c.user_id = ids.next().unwrap_or_default());
                }
                self.scoring.score_conversion(r).await.map(|a| v1_timing(a.into_inner().timing))
            }
            Call::Kserve(r) => self.kserve.model_infer(r.clone()).await.map(|a| {
                let parameters = &a.get_ref().parameters;
                let int = |key: &str| match parameters.get(key).and_then(|p| p.parameter_choice.as_ref()) {
                    Some(pb::infer_parameter::ParameterChoice::Int64Param(v)) => u64::try_from(*v).ok(),
                    _ => None,
                };
                Some(Timed { queue_us: int("queue_us")?, compute_us: int("compute_us")? })
            }),
        }
    }
}

/// What a run's requests gave, and the requests sent behind schedule.
type Measured = (Tally, u64);

/// What one run's requests gave, as they end: latencies of the answers (microseconds), and
/// for the answers with the server's timing, its parts.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    queue: Vec<u32>,
    compute: Vec<u32>,
    outside: Vec<u32>,
    /// Open loop: how late each measured request left (answered or not).
    late: Vec<u32>,
    /// Open loop: latency of each answered request from the time it left.
    from_departure: Vec<u32>,
}

fn micros(us: u128) -> u32 {
    us.min(u128::from(u32::MAX)) as u32
}

impl Tally {
    fn record(&mut self, result: Result<Option<Timed>, tonic::Status>, latency: Duration) {
        match result {
            Ok(timed) => {
                let total = micros(latency.as_micros());
                self.latencies.push(total);
                if let Some(t) = timed {
                    let (queue, compute) = (micros(t.queue_us.into()), micros(t.compute_us.into()));
                    self.queue.push(queue);
                    self.compute.push(compute);
                    self.outside.push(total.saturating_sub(queue.saturating_add(compute)));
                }
            }
            Err(status) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }

    fn add(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.queue.extend(other.queue);
        self.compute.extend(other.compute);
        self.outside.extend(other.outside);
        self.late.extend(other.late);
        self.from_departure.extend(other.from_departure);
    }

    fn server_time(&self) -> Option<ServerTime> {
        if self.queue.is_empty() {
            return None;
        }
        let sorted = |v: &[u32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        let (queue, compute, outside) = (sorted(&self.queue), sorted(&self.compute), sorted(&self.outside));
        Some(ServerTime {
            answers: queue.len() as u64,
            queue_p50_us: percentile(&queue, 50.0),
            queue_p99_us: percentile(&queue, 99.0),
            compute_p50_us: percentile(&compute, 50.0),
            compute_p99_us: percentile(&compute, 99.0),
            outside_p50_us: percentile(&outside, 50.0),
            outside_p99_us: percentile(&outside, 99.0),
        })
    }
}

/// `callers` callers, each sending its next request when the previous one is answered.
async fn closed_loop(
    call: &Arc<Call>,
    channels: &[Channel],
    callers: usize,
    ids: &UserIds,
    window: Window,
) -> anyhow::Result<Measured> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..callers {
        let mut clients = Clients::new(channels[i % channels.len()].clone());
        let (call, stop, ids) = (call.clone(), stop.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let result = clients.send(&call, &ids).await;
                let t1 = Instant::now();
                if t1 >= window.stop_at {
                    break;
                }
                if t0 >= window.measure_from {
                    tally.record(result, t1 - t0);
                }
            }
            tally
        }));
    }
    tokio::time::sleep_until(window.stop_at.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for t in tasks {
        all.add(t.await?);
    }
    Ok((all, 0))
}

/// Requests due every `1 / rate` seconds from `start`, at most `cap` in flight; each
/// latency runs from the time the request was due. A request that finds the cap full
/// waits for a place and leaves late (counted), and the ones due after it follow as soon
/// as places free: the schedule is never stretched, so slow answers are not hidden.
///
/// The schedule is kept by a thread of its own that sleeps until each request is due: the
/// runtime's timer wakes on whole milliseconds, which would send requests in bursts once a
/// millisecond and count up to a millisecond of the generator's own in every latency.
async fn open_loop(
    call: &Arc<Call>,
    channels: &[Channel],
    rate: f64,
    cap: usize,
    ids: &UserIds,
    start: Instant,
    window: Window,
) -> anyhow::Result<Measured> {
    let clients: Vec<Clients> = channels.iter().cloned().map(Clients::new).collect();
    let places = Arc::new(tokio::sync::Semaphore::new(cap));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let handle = tokio::runtime::Handle::current();
    let (call, ids, pacer_tally) = (call.clone(), ids.clone(), tally.clone());
    let pacer = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, tokio::task::JoinSet<()>)> {
        let mut behind = 0u64;
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0u64.. {
            let due = start + interval.mul_f64(k as f64);
            if due >= window.stop_at {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let place = match places.clone().try_acquire_owned() {
                Ok(place) => place,
                Err(_) => handle.block_on(places.clone().acquire_owned())?,
            };
            let late = Instant::now().saturating_duration_since(due) > Duration::from_millis(1);
            if late && due >= window.measure_from {
                behind += 1;
            }
            let mut clients = clients[k as usize % clients.len()].clone();
            let (call, ids, tally) = (call.clone(), ids.clone(), pacer_tally.clone());
            tasks.spawn_on(
                async move {
                    let left = Instant::now();
                    let result = clients.send(&call, &ids).await;
                    let done = Instant::now();
                    drop(place);
                    if due >= window.measure_from && done < window.stop_at {
                        let mut tally = tally.lock().expect("tally lock");
                        tally.late.push(micros(left.saturating_duration_since(due).as_micros()));
                        if result.is_ok() {
                            tally.from_departure.push(micros((done - left).as_micros()));
                        }
                        tally.record(result, done - due);
                    }
                },
                &handle,
            );
            // Reap finished requests as we go, so that a long run holds only those in flight.
            while tasks.try_join_next().is_some() {}
        }
        Ok((behind, tasks))
    });
    let (behind, mut tasks) = pacer.await??;
    // Answers after the end of the window do not count; the ones in flight are cut.
    tokio::time::sleep_until(window.stop_at.into()).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));
    Ok((tally, behind))
}
