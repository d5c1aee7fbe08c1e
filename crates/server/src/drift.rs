//! Drift of live traffic from each model version's training reference, computed off the
//! request path.
//!
//! After a batch is answered, the inference thread hands its rows (of a
//! [`DriftConfig::sample`] share of each model version's batches, counted per version so
//! that versions served in turn are all sampled; the values it scored, moved, not copied,
//! and the scores) to a bounded buffer under a lock held for a push; when the buffer holds
//! [`DriftConfig::queue_rows`] rows the batch is dropped and counted. One thread takes the
//! buffer every [`DRIFT_INTERVAL`], bins every feature and output of every row into the
//! current sub-window of that version's rolling window (sub-windows are timed by a
//! monotonic clock started with the monitor, so a step of the wall clock does not move
//! rows between them), and recomputes each version's PSI and KS per column once it holds
//! [`DriftConfig::min_rows`] rows. A version reloaded with another reference starts a new
//! window on the new reference's bins. `/metrics` reads the last figures. Versions without
//! a reference in their package are not monitored.

use liveprofile_drift::{ColumnDrift, DriftReport, Reference, Window};
use liveprofile_runtime::{LoadedModel, Scores};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the monitor takes what was offered and recomputes its figures.
pub const DRIFT_INTERVAL: Duration = Duration::from_millis(250);
/// Default [`DriftConfig::window`]: ten minutes.
pub const DEFAULT_DRIFT_WINDOW_SECONDS: u64 = 600;
/// Sub-windows per window: the window moves on by a tenth of its length at a time.
pub const DRIFT_SUB_WINDOWS: usize = 10;
/// Default [`DriftConfig::queue_rows`].
pub const DEFAULT_DRIFT_QUEUE_ROWS: usize = 65_536;
/// Default [`DriftConfig::sample`]: one answered batch in ten.
pub const DEFAULT_DRIFT_SAMPLE: f64 = 0.1;

/// Settings of the drift monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftConfig {
    /// Length of the rolling window of live traffic the figures cover.
    pub window: Duration,
    /// Least rows in a version's window before its figures are reported.
    pub min_rows: u64,
    /// Rows waiting for the monitor's thread (their values and scores: about
    /// `rows x (features + outputs) x 4` bytes); beyond, a batch's rows are dropped and
    /// counted. At least the largest batch the server scores (see
    /// [`crate::ServerConfig::validate`]).
    pub queue_rows: usize,
    /// Share of each model version's answered batches monitored, 0 to 1 (every batch's
    /// rows, or none of them; taken evenly per version: its batch n is monitored when
    /// `floor((n + 1) s) > floor(n s)`).
    pub sample: f64,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            window: Duration::from_secs(DEFAULT_DRIFT_WINDOW_SECONDS),
            min_rows: liveprofile_drift::DEFAULT_MIN_ROWS,
            queue_rows: DEFAULT_DRIFT_QUEUE_ROWS,
            sample: DEFAULT_DRIFT_SAMPLE,
        }
    }
}

impl DriftConfig {
    /// Refuses settings that cannot work, naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.window.as_millis() < DRIFT_SUB_WINDOWS as u128 {
            anyhow::bail!("--drift-window-seconds must be at least 1");
        }
        if !(self.sample > 0.0 && self.sample <= 1.0) {
            anyhow::bail!("--drift-sample must be above 0 and at most 1 (--no-drift turns the monitor off)");
        }
        if self.min_rows == 0 || self.queue_rows == 0 {
            anyhow::bail!("--drift-min-rows and --drift-queue-rows must be at least 1");
        }
        Ok(())
    }
}

/// A scored batch waiting for the monitor.
struct Offered {
    model: Arc<LoadedModel>,
    values: Vec<f32>,
    scores: Scores,
}

/// One version's figures, as last computed.
#[derive(Debug, Clone)]
pub struct VersionDrift {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u32,
    /// Rows in its window.
    pub rows: u64,
    /// Every column compared, when the window holds at least the minimum rows.
    pub columns: Vec<ColumnDrift>,
}

struct Tracked {
    reference: Arc<Reference>,
    window: Window,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<(Vec<Offered>, usize)>,
    closed: AtomicBool,
    dropped: AtomicU64,
    /// Answered batches per model name and version, for the sample (an entry per version
    /// ever offered: a few bytes each).
    batches: Mutex<HashMap<String, HashMap<u32, u64>>>,
    figures: Mutex<Vec<VersionDrift>>,
}

/// The running monitor (its thread is stopped and joined on drop).
pub struct DriftMonitor {
    config: DriftConfig,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for DriftMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftMonitor").field("config", &self.config).finish()
    }
}

impl DriftMonitor {
    /// Starts the monitor's thread.
    pub fn start(config: DriftConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let c = config.clone();
        let thread = std::thread::Builder::new().name("drift".into()).spawn(move || run(&c, &s))?;
        Ok(DriftMonitor { config, shared, thread: Mutex::new(Some(thread)) })
    }

    /// Hands over an answered batch without waiting: ignored when the version has no
    /// reference, dropped and counted when the buffer is full.
    pub fn offer(&self, model: &Arc<LoadedModel>, values: Vec<f32>, scores: Scores) {
        if model.drift_reference().is_none() || scores.rows == 0 {
            return;
        }
        if self.config.sample < 1.0 && !self.sampled(model) {
            return;
        }
        let rows = scores.rows;
        let mut held = self.shared.buffer.lock().expect("drift buffer lock");
        if held.1 + rows > self.config.queue_rows || self.shared.closed.load(Ordering::Acquire) {
            drop(held);
            self.shared.dropped.fetch_add(rows as u64, Ordering::Relaxed);
            return;
        }
        held.1 += rows;
        held.0.push(Offered { model: model.clone(), values, scores });
    }

    /// Counts a batch of the model's version and says whether it is one of the sample.
    fn sampled(&self, model: &LoadedModel) -> bool {
        let mut batches = self.shared.batches.lock().expect("drift sample lock");
        let versions = match batches.get_mut(model.name()) {
            Some(v) => v,
            None => batches.entry(model.name().to_owned()).or_default(),
        };
        let count = versions.entry(model.version()).or_default();
        let n = *count as f64;
        *count += 1;
        ((n + 1.0) * self.config.sample).floor() > (n * self.config.sample).floor()
    }

    /// Rows dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The last figures of every monitored version.
    pub fn figures(&self) -> Vec<VersionDrift> {
        self.shared.figures.lock().expect("drift figures lock").clone()
    }

    /// Stops the thread. Safe to call more than once.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some(t) = self.thread.lock().expect("drift thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for DriftMonitor {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(config: &DriftConfig, s: &Shared) {
    let sub_ms = (config.window.as_millis() as u64 / DRIFT_SUB_WINDOWS as u64).max(1);
    let mut tracked: HashMap<(String, u32), Tracked> = HashMap::new();
    let mut row_outputs: Vec<f32> = Vec::new();
    // Sub-windows count monotonic time since the start: a wall clock set back would put
    // rows in a sub-window "in the future" that stays the newest until it is reached.
    let started = Instant::now();
    while !s.closed.load(Ordering::Acquire) {
        std::thread::sleep(DRIFT_INTERVAL);
        let taken = {
            let mut held = s.buffer.lock().expect("drift buffer lock");
            held.1 = 0;
            std::mem::take(&mut held.0)
        };
        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for o in taken {
            let Some(reference) = o.model.drift_reference() else { continue };
            let key = (o.model.name().to_owned(), o.model.version());
            let t = tracked.entry(key).or_insert_with(|| Tracked {
                reference: reference.clone(),
                window: Window::new(DRIFT_SUB_WINDOWS, sub_ms),
            });
            if !Arc::ptr_eq(&t.reference, reference) {
                // The version was loaded again. Another reference: its bins differ, the
                // window starts anew; the same one: the window goes on.
                if *t.reference != **reference {
                    t.window = Window::new(DRIFT_SUB_WINDOWS, sub_ms);
                }
                t.reference = reference.clone();
            }
            let width = o.model.width();
            let live = t.window.current(&t.reference, now);
            for r in 0..o.scores.rows {
                row_outputs.clear();
                for out in &o.scores.outputs {
                    row_outputs.extend_from_slice(&out.values[r * out.width..(r + 1) * out.width]);
                }
                // The package's loading checked the reference against the schema and the
                // outputs: a row of another width is a defect, skipped, never misattributed.
                if live.add_row(&t.reference, &o.values[r * width..(r + 1) * width], &row_outputs).is_err() {
                    s.dropped.fetch_add((o.scores.rows - r) as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
        let mut figures = Vec::with_capacity(tracked.len());
        tracked.retain(|(model, version), t| {
            let totals = t.window.totals(&t.reference, now);
            if totals.rows == 0 {
                return false;
            }
            let columns = if totals.rows >= config.min_rows {
                let report = DriftReport::new(model, *version, "server window", &t.reference, &totals);
                report.features.into_iter().chain(report.outputs).collect()
            } else {
                Vec::new()
            };
            figures.push(VersionDrift { model: model.clone(), version: *version, rows: totals.rows, columns });
            true
        });
        *s.figures.lock().expect("drift figures lock") = figures;
    }
}
