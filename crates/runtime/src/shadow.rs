//! Shadow scoring off the request path: the request is answered by its arm; a copy of its
//! input goes to a bounded queue and a background thread scores it with the shadow
//! version and records how far the shadow's outputs are from the answer. A full queue
//! drops the shadow work (counted), never delays or fails the request.

use crate::model::LoadedModel;
use std::collections::BTreeMap;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Divergence of a shadow version from the version that answered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Divergence {
    /// Rows compared.
    pub rows: u64,
    /// Mean absolute difference over every output value.
    pub mean_abs_diff: f64,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Shadow jobs dropped because the queue was full.
    pub dropped: u64,
    /// Shadow jobs that failed to score.
    pub failed: u64,
}

/// Key: (model, answering version, shadow version).
pub type DivergenceKey = (String, u32, u32);

struct Job {
    shadow: Arc<LoadedModel>,
    answered_version: u32,
    values: Vec<f32>,
    rows: usize,
    answer: Vec<f32>,
}

#[derive(Default)]
struct Totals {
    sum_abs: f64,
    values: u64,
    d: Divergence,
}

/// The shadow scorer: one background thread and a bounded queue.
pub struct ShadowScorer {
    tx: Option<SyncSender<Job>>,
    stats: Arc<Mutex<BTreeMap<DivergenceKey, Totals>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShadowScorer {
    /// Starts the scorer with a queue of `capacity` jobs.
    pub fn start(capacity: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(capacity);
        let stats: Arc<Mutex<BTreeMap<DivergenceKey, Totals>>> = Arc::default();
        let s = stats.clone();
        let thread = std::thread::Builder::new()
            .name("shadow-scorer".into())
            .spawn(move || {
                for job in rx {
                    let key = (job.shadow.name().to_owned(), job.answered_version, job.shadow.version());
                    let result = job.shadow.score(&job.values, job.rows);
                    let mut stats = s.lock().expect("shadow stats lock");
                    let t = stats.entry(key).or_default();
                    match result {
                        Ok(scores) => {
                            let shadow: Vec<f32> = scores.outputs.into_iter().flat_map(|o| o.values).collect();
                            for (a, b) in shadow.iter().zip(&job.answer) {
                                let d = f64::from((a - b).abs());
                                t.sum_abs += d;
                                t.values += 1;
                                t.d.max_abs_diff = t.d.max_abs_diff.max(d);
                            }
                            t.d.rows += job.rows as u64;
                            t.d.mean_abs_diff = if t.values == 0 { 0.0 } else { t.sum_abs / t.values as f64 };
                        }
                        Err(_) => t.d.failed += 1,
                    }
                }
            })
            .expect("spawn shadow scorer");
        ShadowScorer { tx: Some(tx), stats, thread: Some(thread) }
    }

    /// Queues a shadow comparison of an answered request (all outputs concatenated in
    /// manifest order). Returns false if the queue was full and the job was dropped.
    pub fn submit(
        &self,
        shadow: Arc<LoadedModel>,
        answered_version: u32,
        values: &[f32],
        rows: usize,
        answer: Vec<f32>,
    ) -> bool {
        let key = (shadow.name().to_owned(), answered_version, shadow.version());
        let job = Job { shadow, answered_version, values: values.to_vec(), rows, answer };
        match self.tx.as_ref().expect("running").try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.lock().expect("shadow stats lock").entry(key).or_default().d.dropped += 1;
                false
            }
        }
    }

    /// Divergence figures so far.
    pub fn divergence(&self) -> BTreeMap<DivergenceKey, Divergence> {
        self.stats.lock().expect("shadow stats lock").iter().map(|(k, t)| (k.clone(), t.d)).collect()
    }

    /// Waits until every queued job is scored, then stops the thread.
    pub fn finish(mut self) -> BTreeMap<DivergenceKey, Divergence> {
        self.stop();
        self.divergence()
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ShadowScorer {
    fn drop(&mut self) {
        self.stop();
    }
}
