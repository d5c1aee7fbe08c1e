//! `liveprofile ingest-bench`: ingest throughput and freshness of a running server, and
//! the profile store's memory per user, recovery and snapshot times in process.
//!
//! - Throughput: producers send batches of synthetic events over `IngestEvents` as fast as
//!   they are acknowledged (the log is on, as the server is configured).
//! - Freshness: while producers keep a sustained load (a share of the measured
//!   throughput), a probe sends one event for a probe user and scores that user by id
//!   (`ScoreTags` without features) until the answer's `last_event_ms` is the probe's
//!   time. Reported: acknowledgement to reflecting score, and send to reflecting score.
//!   Over MQTT: publish (QoS 1) to reflecting score, polling the score.
//! - Store (`--store-users`): users' events ingested in process; resident memory per user,
//!   events/s, log replay, snapshot and snapshot load times.

use crate::synthetic::SyntheticEvents;
use anyhow::Context;
use liveprofile_client::v1::{self, ingest_client::IngestClient, scoring_client::ScoringClient};
use liveprofile_store::{Durability, IncomingEvent, ProfileStore, StoreOptions, now_ms};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The planning document's baseline: cross-platform data arrives more than 5 s late.
pub const BASELINE_MS: f64 = 5000.0;

/// Users the producers spread events over.
pub const DEFAULT_USERS: u64 = 100_000;
/// Events per IngestEvents call.
pub const DEFAULT_BATCH: usize = 100;
/// Concurrent producers.
pub const DEFAULT_PRODUCERS: usize = 4;
/// Seconds of each measured phase.
pub const DEFAULT_SECONDS: f64 = 10.0;
/// Sustained load during the freshness probes, as a share of the measured throughput.
pub const DEFAULT_LOAD_SHARE: f64 = 0.5;
/// Pause between two freshness probes, milliseconds.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 10;

/// What the ingest benchmark measures, against which server.
#[derive(Debug, Clone)]
pub struct IngestBenchConfig {
    /// Server address (host:port); its models must include user_tags.
    pub target: String,
    /// MQTT broker host:port the server subscribes to (enables the MQTT figures).
    pub mqtt_broker: Option<String>,
    /// Users the producers spread events over.
    pub users: u64,
    /// Events per IngestEvents call.
    pub batch: usize,
    /// Concurrent producers.
    pub producers: usize,
    /// Seconds of each measured phase.
    pub seconds: f64,
    /// Sustained load during the freshness probes, as a share of the measured throughput.
    pub load_share: f64,
    /// Pause between two freshness probes, milliseconds.
    pub probe_interval_ms: u64,
    /// Users of the in-process store phase (0: skip it).
    pub store_users: u64,
    /// Skip the server phases (only the store phase).
    pub store_only: bool,
    /// A label for the report.
    pub label: String,
}

impl Default for IngestBenchConfig {
    fn default() -> Self {
        IngestBenchConfig {
            target: crate::loadgen::DEFAULT_TARGET.to_owned(),
            mqtt_broker: None,
            users: DEFAULT_USERS,
            batch: DEFAULT_BATCH,
            producers: DEFAULT_PRODUCERS,
            seconds: DEFAULT_SECONDS,
            load_share: DEFAULT_LOAD_SHARE,
            probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            store_users: 0,
            store_only: false,
            label: String::new(),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    Percentiles { n: v.len(), p50_ms: at(0.5), p99_ms: at(0.99), max_ms: v[v.len() - 1] }
}

/// What the benchmark measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestBenchReport {
    /// Label given.
    pub label: String,
    /// Events acknowledged per second at full speed.
    pub events_per_s: f64,
    /// Acknowledgement latency of one batch at full speed.
    pub batch_ack: Percentiles,
    /// Sustained load during the probes, events per second.
    pub sustained_events_per_s: f64,
    /// gRPC: acknowledgement to a score that reflects the event.
    pub grpc_ack_to_score: Percentiles,
    /// gRPC: send to a score that reflects the event.
    pub grpc_send_to_score: Percentiles,
    /// MQTT: publish to a score that reflects the event.
    pub mqtt_publish_to_score: Option<Percentiles>,
    /// MQTT: events per second from one publisher, 100 events per message.
    pub mqtt_events_per_s: Option<f64>,
    /// The planning document's baseline, milliseconds.
    pub baseline_ms: f64,
    /// In-process store figures.
    pub store: Option<StoreFigures>,
}

/// The in-process store phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreFigures {
    /// Users.
    pub users: u64,
    /// Events ingested.
    pub events: u64,
    /// Events per second through `ProfileStore::ingest` (batches of 1,000, log written).
    pub events_per_s: f64,
    /// Resident memory added per user, bytes.
    pub rss_bytes_per_user: f64,
    /// Opening from the log alone, seconds.
    pub replay_log_s: f64,
    /// Writing a snapshot, seconds.
    pub snapshot_s: f64,
    /// Snapshot size per user, bytes.
    pub snapshot_bytes_per_user: f64,
    /// Opening from the snapshot, seconds.
    pub load_snapshot_s: f64,
}

/// Connects, retrying for a minute while the server starts.
async fn connect(target: &str) -> anyhow::Result<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))?.tcp_nodelay(true);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= until => return Err(e).with_context(|| format!("cannot connect to {target}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn send(c: &mut IngestClient<Channel>, events: Vec<v1::LiveEvent>) -> anyhow::Result<v1::IngestAck> {
    let ack = c.ingest_events(tokio_stream::iter([v1::EventBatch { events }])).await?.into_inner();
    anyhow::ensure!(ack.rejected == 0 && ack.late == 0, "events refused: {:?}", ack.errors.first());
    Ok(ack)
}

/// Producers sending at full speed (`rate = None`) or at a paced total rate until `stop`.
fn spawn_producers(
    channel: &Channel,
    args: &IngestBenchConfig,
    rate: Option<f64>,
    stop: Arc<AtomicBool>,
    counted: Arc<AtomicU64>,
    prefix: &str,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<Vec<f64>>>> {
    (0..args.producers)
        .map(|p| {
            let mut client = IngestClient::new(channel.clone());
            let stop = stop.clone();
            let counted = counted.clone();
            let batch = args.batch;
            let users = (args.users / args.producers as u64).max(1);
            let prefix = format!("{prefix}{p}");
            let interval = rate.map(|r| Duration::from_secs_f64(batch as f64 * args.producers as f64 / r.max(1.0)));
            tokio::spawn(async move {
                let mut g = SyntheticEvents::new(&prefix, users);
                let mut latencies = Vec::new();
                let mut next = tokio::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = now_ms();
                    let events: Vec<v1::LiveEvent> = (0..batch)
                        .map(|_| {
                            let mut e = g.next_event(now);
                            e.user_id = format!("{prefix}-{}", e.user_id);
                            e
                        })
                        .collect();
                    let t = Instant::now();
                    send(&mut client, events).await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    counted.fetch_add(batch as u64, Ordering::Relaxed);
                    if let Some(i) = interval {
                        next += i;
                        tokio::time::sleep_until(next).await;
                    }
                }
                Ok(latencies)
            })
        })
        .collect()
}

async fn score_by_id(scoring: &mut ScoringClient<Channel>, user: &str) -> anyhow::Result<i64> {
    let answer = scoring
        .score_tags(v1::ScoreTagsRequest {
            users: vec![v1::UserFeatures { user_id: user.to_owned(), ..Default::default() }],
            top_k: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(answer.users[0].profile.as_ref().map_or(0, |p| p.last_event_ms))
}

/// Waits until the server scores (a user unknown to it is NOT_FOUND, not UNAVAILABLE).
async fn wait_ready(channel: &Channel) -> anyhow::Result<()> {
    let mut scoring = ScoringClient::new(channel.clone());
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        match score_by_id(&mut scoring, "ingest-bench-readiness").await {
            Ok(_) => return Ok(()),
            Err(e) => {
                if let Some(s) = e.downcast_ref::<tonic::Status>()
                    && s.code() == tonic::Code::NotFound
                {
                    return Ok(());
                }
                anyhow::ensure!(Instant::now() < until, "server not ready: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs the benchmark.
pub async fn run(args: IngestBenchConfig) -> anyhow::Result<IngestBenchReport> {
    anyhow::ensure!(args.batch > 0 && args.producers > 0 && args.users > 0, "batch, producers and users must be > 0");
    let mut report = IngestBenchReport { label: args.label.clone(), baseline_ms: BASELINE_MS, ..Default::default() };
    if !args.store_only {
        server_phases(&args, &mut report).await?;
    }
    if args.store_users > 0 {
        let users = args.store_users;
        report.store = Some(tokio::task::spawn_blocking(move || store_phase(users)).await??);
    }
    Ok(report)
}

async fn server_phases(args: &IngestBenchConfig, report: &mut IngestBenchReport) -> anyhow::Result<()> {
    let channel = connect(&args.target).await?;
    wait_ready(&channel).await?;
    let seconds = Duration::from_secs_f64(args.seconds);

    // Full speed.
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let producers = spawn_producers(&channel, args, None, stop.clone(), counted.clone(), "full");
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let (c0, t0) = (counted.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(seconds).await;
    report.events_per_s = (counted.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for p in producers {
        latencies.extend(p.await??);
    }
    report.batch_ack = percentiles(latencies);

    // Sustained load with probes.
    let rate = report.events_per_s * args.load_share;
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let producers = spawn_producers(&channel, args, Some(rate), stop.clone(), counted.clone(), "load");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, t0) = (counted.load(Ordering::Relaxed), Instant::now());
    let mut ingest = IngestClient::new(channel.clone());
    let mut scoring = ScoringClient::new(channel.clone());
    let mut probe = SyntheticEvents::new("probe", 100);
    let (mut ack_to_score, mut send_to_score) = (Vec::new(), Vec::new());
    let mut last_ts = 0i64;
    let until = Instant::now() + seconds;
    let mut n = 0u64;
    while Instant::now() < until {
        // Strictly increasing probe times, so that "reflects" is unambiguous.
        let ts = now_ms().max(last_ts + 1);
        last_ts = ts;
        let event = probe.event_of(n % 100, ts);
        let user = event.user_id.clone();
        n += 1;
        let sent = Instant::now();
        send(&mut ingest, vec![event]).await?;
        let acked = Instant::now();
        loop {
            if score_by_id(&mut scoring, &user).await? >= ts {
                break;
            }
            anyhow::ensure!(sent.elapsed() < Duration::from_secs(30), "event at {ts} never reflected");
        }
        let done = Instant::now();
        ack_to_score.push((done - acked).as_secs_f64() * 1e3);
        send_to_score.push((done - sent).as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(args.probe_interval_ms)).await;
    }
    report.grpc_ack_to_score = percentiles(ack_to_score);
    report.grpc_send_to_score = percentiles(send_to_score);

    if let Some(broker) = &args.mqtt_broker {
        let (publish_to_score, events_per_s) =
            mqtt_phase(broker, &mut scoring, seconds, args.probe_interval_ms).await?;
        report.mqtt_publish_to_score = Some(publish_to_score);
        report.mqtt_events_per_s = Some(events_per_s);
    }
    report.sustained_events_per_s = (counted.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await??;
    }
    Ok(())
}

async fn mqtt_phase(
    broker: &str,
    scoring: &mut ScoringClient<Channel>,
    seconds: Duration,
    probe_interval_ms: u64,
) -> anyhow::Result<(Percentiles, f64)> {
    let (host, port) = broker.rsplit_once(':').context("--mqtt-broker is host:port")?;
    let mut options = rumqttc::MqttOptions::new(format!("ingest-bench-{}", std::process::id()), host, port.parse()?);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "benchmark MQTT connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    let publish = |user: &str, id: String, ts: i64| {
        let e = IncomingEvent {
            event_id: id,
            ts_ms: ts,
            user_id: user.to_owned(),
            kind: "like".to_owned(),
            ..Default::default()
        };
        serde_json::to_vec(&e).expect("event serializes")
    };
    // Freshness probes; the first ones (connection set-up) are not measured.
    const WARM_UP: u64 = 10;
    let mut samples = Vec::new();
    let mut last_ts = 0i64;
    let mut until = Instant::now() + seconds;
    let mut n = 0u64;
    let run = std::process::id();
    while Instant::now() < until || n < WARM_UP {
        if n == WARM_UP {
            until = Instant::now() + seconds;
        }
        let ts = now_ms().max(last_ts + 1);
        last_ts = ts;
        let user = format!("mqtt-probe-{}", n % 100);
        let payload = publish(&user, format!("mqtt-{run}-{n}"), ts);
        n += 1;
        let sent = Instant::now();
        client.publish("live/douyin/room-probe/events", rumqttc::QoS::AtLeastOnce, false, payload).await?;
        loop {
            match score_by_id(scoring, &user).await {
                Ok(t) if t >= ts => break,
                Ok(_) => {}
                Err(e) if e.downcast_ref::<tonic::Status>().is_some_and(|s| s.code() == tonic::Code::NotFound) => {}
                Err(e) => return Err(e),
            }
            anyhow::ensure!(sent.elapsed() < Duration::from_secs(30), "MQTT event at {ts} never reflected");
        }
        if n > WARM_UP {
            samples.push(sent.elapsed().as_secs_f64() * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(probe_interval_ms)).await;
    }
    // Throughput: messages of 100 events from one publisher, then a sentinel.
    let messages = 2000u64;
    let started = Instant::now();
    let base = now_ms();
    for m in 0..messages {
        let events: Vec<IncomingEvent> = (0..100)
            .map(|i| IncomingEvent {
                event_id: format!("mqtt-bulk-{run}-{m}-{i}"),
                ts_ms: base + m as i64,
                user_id: format!("mqtt-bulk-{}", (m * 100 + i) % 50_000),
                kind: "like".to_owned(),
                ..Default::default()
            })
            .collect();
        client
            .publish("live/kuaishou/room-bulk/events", rumqttc::QoS::AtLeastOnce, false, serde_json::to_vec(&events)?)
            .await?;
    }
    let sentinel_ts = base + messages as i64 + 1;
    client
        .publish(
            "live/kuaishou/room-bulk/events",
            rumqttc::QoS::AtLeastOnce,
            false,
            publish("mqtt-bulk-sentinel", format!("mqtt-bulk-{run}-sentinel"), sentinel_ts),
        )
        .await?;
    loop {
        match score_by_id(scoring, "mqtt-bulk-sentinel").await {
            Ok(t) if t >= sentinel_ts => break,
            Ok(_) => {}
            Err(e) if e.downcast_ref::<tonic::Status>().is_some_and(|s| s.code() == tonic::Code::NotFound) => {}
            Err(e) => return Err(e),
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "MQTT bulk never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let events_per_s = (messages * 100 + 1) as f64 / started.elapsed().as_secs_f64();
    let _ = client.disconnect().await;
    poller.abort();
    Ok((percentiles(samples), events_per_s))
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn store_phase(users: u64) -> anyhow::Result<StoreFigures> {
    let dir = tempfile_dir()?;
    let mut options = StoreOptions::new(&dir);
    options.durability = Durability::Fsync;
    options.snapshot_every_records = u64::MAX;
    options.snapshot_interval = Duration::from_secs(86_400);
    let before = rss_bytes();
    let store = ProfileStore::open(options.clone())?;
    // One visit (8 events) per user, spread over the last hour.
    let mut g = SyntheticEvents::new("store", users);
    let events_total = users * 8;
    let start = now_ms() - 3_600_000;
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..events_total {
        let e = g.next_event(start + (i * 3_000_000 / events_total) as i64);
        batch.push(crate::synthetic::incoming(e));
        if batch.len() == 1000 || i + 1 == events_total {
            let r = store.ingest(&batch)?;
            anyhow::ensure!(r.accepted == batch.len() as u64, "store refused events: {:?}", r.errors.first());
            batch.clear();
        }
    }
    let events_per_s = events_total as f64 / started.elapsed().as_secs_f64();
    let rss_bytes_per_user = rss_bytes().saturating_sub(before) as f64 / users as f64;
    drop(store);
    let t = Instant::now();
    let store = ProfileStore::open(options.clone())?;
    let replay_log_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(store.user_count() as u64 == users, "replay lost users");
    let t = Instant::now();
    let seq = store.snapshot()?;
    let snapshot_s = t.elapsed().as_secs_f64();
    let snapshot_bytes = std::fs::metadata(dir.join(format!("snapshot-{seq:020}.snap")))?.len();
    drop(store);
    let t = Instant::now();
    let store = ProfileStore::open(options)?;
    let load_snapshot_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(store.user_count() as u64 == users, "snapshot lost users");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(StoreFigures {
        users,
        events: events_total,
        events_per_s,
        rss_bytes_per_user,
        replay_log_s,
        snapshot_s,
        snapshot_bytes_per_user: snapshot_bytes as f64 / users as f64,
        load_snapshot_s,
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("liveprofile-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
