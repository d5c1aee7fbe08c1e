//! What the service answered, for the prediction log (`liveprofile-predlog`): the request's
//! API and id, and one record per scored row with the features as scored. Nothing here
//! waits for the log or fails an answer: records are offered, and dropped and counted when
//! the log cannot keep up.

use crate::state::AppState;
use liveprofile_predlog::{PredictionRecord, RowOutputs};
use liveprofile_runtime::{LoadedModel, Scores};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::MetadataMap;

/// The metadata key of a caller's request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id kept from a caller (longer ones are replaced by the server's own).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A request the log samples: its API and id. The id is held in place (a caller's, at most
/// [`MAX_REQUEST_ID_BYTES`], or the server's own): a sampled request allocates nothing for it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `v1.ScoreTags`, `v1.ScoreConversion`, `v1.ScoreStream`, `kserve.ModelInfer`.
    pub api: &'static str,
    id: [u8; MAX_REQUEST_ID_BYTES],
    id_len: usize,
}

impl Call {
    /// The caller's id (`x-request-id`, a stream request's or KServe's `id`) or the server's.
    pub fn request_id(&self) -> &str {
        // Only whole `str`s are copied in.
        std::str::from_utf8(&self.id[..self.id_len]).unwrap_or_default()
    }
}

/// Writes text into a call's id.
struct IdWriter<'a> {
    id: &'a mut [u8; MAX_REQUEST_ID_BYTES],
    len: &'a mut usize,
}

impl std::fmt::Write for IdWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = *self.len + s.len();
        self.id.get_mut(*self.len..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
        *self.len = end;
        Ok(())
    }
}

/// The log's view of a request, or `None` when there is no log or the request is not in
/// its sample. `given` is the caller's id, when it sent a usable one.
pub fn call(state: &AppState, api: &'static str, given: Option<&str>) -> Option<Call> {
    let log = state.predictions.as_ref()?;
    let mut call = Call { api, id: [0; MAX_REQUEST_ID_BYTES], id_len: 0 };
    let mut out = IdWriter { id: &mut call.id, len: &mut call.id_len };
    let written = match given.filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES) {
        Some(id) => std::fmt::Write::write_str(&mut out, id),
        None => state.write_request_id(&mut out),
    };
    written.ok()?;
    log.sampled(call.request_id()).then_some(call)
}

/// The caller's request id from gRPC metadata, when it is printable ASCII.
pub fn request_id_of(metadata: &MetadataMap) -> Option<&str> {
    metadata.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok())
}

/// Where a scored row came from.
#[derive(Debug, Clone, Copy)]
pub struct RowOrigin<'a> {
    /// Unified user id (empty when the API has none).
    pub user_id: &'a str,
    /// Platform, when given.
    pub platform: &'a str,
    /// Room, when given.
    pub room_id: &'a str,
    /// The time the features describe, when the service built them from the profile
    /// store; `None` for features the caller sent.
    pub as_of_ms: Option<i64>,
}

/// How a group of rows was answered.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The version that answered.
    pub model: &'a Arc<LoadedModel>,
    /// Its arm's name.
    pub arm: &'static str,
    /// Experiment and arm, when an experiment answered.
    pub experiment: Option<(&'a str, &'a str)>,
    /// Time in the queue and in the batch.
    pub queue: Duration,
    /// Time its batch took.
    pub compute: Duration,
}

/// Adds the records of a group of rows to `out`: `values` row-major in the model's schema
/// order, scores of the same rows. The records borrow everything; the log copies them when
/// they are offered.
pub fn records<'a>(
    out: &mut Vec<PredictionRecord<'a>>,
    call: &'a Call,
    answered: &Answered<'a>,
    origins: impl IntoIterator<Item = RowOrigin<'a>>,
    values: &'a [f32],
    scores: &'a Scores,
) {
    let width = answered.model.width();
    let time_ms = liveprofile_store::now_ms();
    let (experiment, experiment_arm) = answered.experiment.unwrap_or_default();
    let request_id = call.request_id();
    for (k, origin) in origins.into_iter().enumerate() {
        out.push(PredictionRecord {
            request_id,
            time_ms,
            as_of_ms: origin.as_of_ms,
            api: call.api,
            user_id: origin.user_id,
            platform: origin.platform,
            room_id: origin.room_id,
            model: answered.model,
            arm: answered.arm,
            experiment,
            experiment_arm,
            features: &values[k * width..(k + 1) * width],
            outputs: RowOutputs::Scored { scores, row: k },
            queue_us: answered.queue.as_micros() as u64,
            compute_us: answered.compute.as_micros() as u64,
        });
    }
}

/// Offers a request's records to the log.
pub fn offer(state: &AppState, records: &[PredictionRecord<'_>]) {
    if let Some(log) = &state.predictions {
        log.offer(records);
    }
}
