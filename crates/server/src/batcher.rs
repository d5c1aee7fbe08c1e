//! Dynamic batching off the async runtime.
//!
//! Requests (already validated) queue as jobs. Inference threads take the oldest job and
//! every other queued job for the same model version, up to the maximum batch size; if the
//! batch is not full they wait for more until the oldest job has waited the maximum queue
//! delay (none by default: a batch is then what queued while the threads were busy). The
//! batch is scored in one call and each job gets its own rows back.
//!
//! Admission is bounded: a job that would take the queue over its row limit is refused at
//! once. A job whose deadline passes while it waits is answered DEADLINE_EXCEEDED without
//! being scored. Rows are always scored with the model's batch plan, so a row's scores do
//! not depend on which requests it was batched with.

use crate::config::BatchingConfig;
use crate::drift::DriftMonitor;
use crate::metrics::Metrics;
use liveprofile_runtime::{LoadedModel, ScoreError, Scores, ShadowScorer};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Why a job was not scored.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The queue is full.
    #[error("queue full: {queued} rows waiting, limit {limit}; retry later")]
    QueueFull {
        /// Rows waiting.
        queued: usize,
        /// Limit.
        limit: usize,
    },
    /// The deadline passed before the job was scored.
    #[error("deadline exceeded after {waited_us} us in the queue")]
    DeadlineExceeded {
        /// Time waited.
        waited_us: u64,
    },
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Scoring failed.
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// A scored job.
#[derive(Debug)]
pub struct Outcome {
    /// This job's rows only.
    pub scores: Scores,
    /// Time from submission until its batch started.
    pub queue: Duration,
    /// Time its batch took to score.
    pub compute: Duration,
    /// Rows in its batch.
    pub batch_rows: usize,
    /// When it was queued (its queue time runs from here, then its batch's compute time).
    pub enqueued: Instant,
}

/// Work for the batcher.
pub struct Job {
    /// The version that answers.
    pub model: Arc<LoadedModel>,
    /// `rows x width` validated values.
    pub values: Vec<f32>,
    /// Rows.
    pub rows: usize,
    /// Versions to compare with off the request path (shadow; stable for a canary).
    pub compare: Vec<Arc<LoadedModel>>,
    /// Latest time at which scoring is still useful.
    pub deadline: Option<Instant>,
}

struct Queued {
    job: Job,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Outcome, JobError>>,
}

struct Queue {
    jobs: VecDeque<Queued>,
    rows: usize,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    config: BatchingConfig,
    metrics: Arc<Metrics>,
    shadow: Arc<ShadowScorer>,
    drift: Option<Arc<DriftMonitor>>,
}

/// The batcher and its inference threads (stopped and joined on drop).
pub struct Batcher {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("config", &self.shared.config).finish()
    }
}

impl Batcher {
    /// Starts `config.threads` inference threads; answered batches go to the drift
    /// monitor, when there is one.
    pub fn start(
        config: BatchingConfig,
        metrics: Arc<Metrics>,
        shadow: Arc<ShadowScorer>,
        drift: Option<Arc<DriftMonitor>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), rows: 0, stopping: false }),
            wake: Condvar::new(),
            config,
            metrics,
            shadow,
            drift,
        });
        let threads = (0..shared.config.threads)
            .map(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawn inference thread")
            })
            .collect();
        Batcher { shared, threads }
    }

    /// Queues a job; the receiver gets its outcome. Refused at once when the queue is full
    /// or the batcher is stopping.
    pub fn submit(&self, job: Job) -> Result<oneshot::Receiver<Result<Outcome, JobError>>, JobError> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.shared.queue.lock().expect("batch queue lock");
        if q.stopping {
            return Err(JobError::ShuttingDown);
        }
        let limit = self.shared.config.max_queue_rows;
        if q.rows + job.rows > limit {
            self.shared.metrics.rejected.with_label_values(&[job.model.name()]).inc();
            return Err(JobError::QueueFull { queued: q.rows, limit });
        }
        q.rows += job.rows;
        q.jobs.push_back(Queued { job, enqueued: Instant::now(), reply: tx });
        drop(q);
        self.shared.wake.notify_one();
        Ok(rx)
    }

    /// Rows waiting.
    pub fn queued_rows(&self) -> usize {
        self.shared.queue.lock().expect("batch queue lock").rows
    }

    fn stop(&mut self) {
        self.shared.queue.lock().expect("batch queue lock").stopping = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Rows of the queued jobs for `model`, oldest first, that fit one batch.
fn batch_rows_for(q: &Queue, model: &Arc<LoadedModel>, max: usize) -> usize {
    let mut rows = 0;
    for j in q.jobs.iter().filter(|j| Arc::ptr_eq(&j.job.model, model)) {
        if rows > 0 && rows + j.job.rows > max {
            break;
        }
        rows += j.job.rows;
    }
    rows
}

fn worker(s: &Shared) {
    let max = s.config.max_batch_size;
    loop {
        let mut q = s.queue.lock().expect("batch queue lock");
        // Wait for work; on stop, finish what is queued first.
        let (model, first_enqueued) = loop {
            if let Some(first) = q.jobs.front() {
                break (first.job.model.clone(), first.enqueued);
            }
            if q.stopping {
                return;
            }
            q = s.wake.wait(q).expect("batch queue lock");
        };
        // Wait for the batch to fill, at most until the oldest job's delay is spent.
        let flush_at = first_enqueued + s.config.max_queue_delay;
        loop {
            let now = Instant::now();
            if q.stopping || now >= flush_at || batch_rows_for(&q, &model, max) >= max {
                break;
            }
            q = s.wake.wait_timeout(q, flush_at - now).expect("batch queue lock").0;
        }
        // Another thread may have taken these jobs while this one waited.
        let mut batch: Vec<Queued> = Vec::new();
        let mut rows = 0;
        let mut i = 0;
        while i < q.jobs.len() {
            if Arc::ptr_eq(&q.jobs[i].job.model, &model) {
                let r = q.jobs[i].job.rows;
                if rows > 0 && rows + r > max {
                    break;
                }
                rows += r;
                batch.push(q.jobs.remove(i).expect("index in range"));
            } else {
                i += 1;
            }
        }
        q.rows -= rows;
        let more = !q.jobs.is_empty();
        drop(q);
        if more {
            s.wake.notify_one();
        }
        if !batch.is_empty() {
            run_batch(s, &model, batch);
        }
    }
}

fn run_batch(s: &Shared, model: &Arc<LoadedModel>, batch: Vec<Queued>) {
    let started = Instant::now();
    let (live, expired): (Vec<Queued>, Vec<Queued>) =
        batch.into_iter().partition(|j| j.job.deadline.is_none_or(|d| d > started));
    for j in expired {
        let waited_us = started.duration_since(j.enqueued).as_micros() as u64;
        let _ = j.reply.send(Err(JobError::DeadlineExceeded { waited_us }));
    }
    if live.is_empty() {
        return;
    }
    let rows: usize = live.iter().map(|j| j.job.rows).sum();
    let mut joined = Vec::new();
    let result = if live.len() == 1 {
        model.score_batched(&live[0].job.values, rows)
    } else {
        joined.reserve_exact(rows * model.width());
        for j in &live {
            joined.extend_from_slice(&j.job.values);
        }
        model.score_batched(&joined, rows)
    };
    let compute = started.elapsed();
    let version = model.version().to_string();
    let labels = [model.name(), version.as_str()];
    s.metrics.exec_count.with_label_values(&labels).inc();
    s.metrics.inference_count.with_label_values(&labels).inc_by(rows as u64);
    s.metrics.batch_size.with_label_values(&labels).observe(rows as f64);
    s.metrics.compute_us.with_label_values(&labels).observe(compute.as_micros() as f64);
    let scores = match result {
        Ok(scores) => scores,
        Err(e) => {
            let message = e.to_string();
            for j in live {
                let _ = j.reply.send(Err(JobError::Score(ScoreError::Engine(message.clone()))));
            }
            return;
        }
    };
    observe_scores(s, model, &version, &scores);
    let queue_hist = s.metrics.queue_us.with_label_values(&labels);
    let mut offset = 0;
    let single = live.len() == 1;
    for mut j in live {
        let r = j.job.rows;
        let part = Scores {
            rows: r,
            outputs: scores
                .outputs
                .iter()
                .map(|o| liveprofile_runtime::OutputScores {
                    width: o.width,
                    values: o.values[offset * o.width..(offset + r) * o.width].to_vec(),
                })
                .collect(),
        };
        offset += r;
        let queue = started.duration_since(j.enqueued);
        queue_hist.observe(queue.as_micros() as f64);
        if !j.job.compare.is_empty() {
            let answer: Vec<f32> = part.outputs.iter().flat_map(|o| o.values.iter().copied()).collect();
            for other in &j.job.compare {
                s.shadow.submit(other.clone(), model.version(), &j.job.values, r, answer.clone());
            }
        }
        let _ = j.reply.send(Ok(Outcome { scores: part, queue, compute, batch_rows: rows, enqueued: j.enqueued }));
        if single {
            joined = std::mem::take(&mut j.job.values);
        }
    }
    // After every answer has left: the values scored (moved, not copied) and the scores.
    if let Some(drift) = &s.drift {
        drift.offer(model, joined, scores);
    }
}

fn observe_scores(s: &Shared, model: &LoadedModel, version: &str, scores: &Scores) {
    for (spec, out) in model.manifest().outputs.iter().zip(&scores.outputs) {
        for c in 0..out.width {
            let column = spec.names.get(c).map_or_else(|| format!("{}[{c}]", spec.name), Clone::clone);
            // Counted locally and added once per column: one atomic add per bucket and
            // batch instead of several per score.
            let h = s.metrics.output_score.with_label_values(&[model.name(), version, column.as_str()]).local();
            for r in 0..scores.rows {
                h.observe(f64::from(out.values[r * out.width + c]));
            }
            h.flush();
        }
    }
}
