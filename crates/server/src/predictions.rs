//! What the service answered, for the prediction log (`liveprofile-predlog`): the request's
//! API and id, and one record per scored row with the features as scored. Nothing here
//! waits for the log or fails an answer: records are offered, and dropped and counted when
//! the log cannot keep up.

use crate::state::AppState;
use liveprofile_predlog::PredictionRecord;
use liveprofile_runtime::{LoadedModel, Scores};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::MetadataMap;

/// The metadata key of a caller's request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id kept from a caller (longer ones are replaced by the server's own).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// A request the log samples: its API and id.
#[derive(Debug, Clone)]
pub struct Call {
    /// `v1.ScoreTags`, `v1.ScoreConversion`, `v1.ScoreStream`, `kserve.ModelInfer`.
    pub api: &'static str,
    /// The caller's id (`x-request-id`, a stream request's or KServe's `id`) or the server's.
    pub request_id: Arc<str>,
}

/// The log's view of a request, or `None` when there is no log or the request is not in
/// its sample. `given` is the caller's id, when it sent a usable one.
pub fn call(state: &AppState, api: &'static str, given: Option<&str>) -> Option<Call> {
    let log = state.predictions.as_ref()?;
    let request_id: Arc<str> = match given.filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES) {
        Some(id) => Arc::from(id),
        None => Arc::from(state.next_request_id()),
    };
    log.sampled(&request_id).then_some(Call { api, request_id })
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

/// The records of a group of rows: `values` row-major in the model's schema order (one row's
/// values become its record's without a copy), scores of the same rows.
pub fn records<'o>(
    call: &Call,
    answered: &Answered<'_>,
    origins: impl IntoIterator<Item = RowOrigin<'o>>,
    values: Vec<f32>,
    scores: &Scores,
) -> Vec<PredictionRecord> {
    let width = answered.model.width();
    let time_ms = liveprofile_store::now_ms();
    let (experiment, experiment_arm) = answered.experiment.unwrap_or_default();
    // A single row keeps the values' own allocation; rows of a larger group are copied.
    let (mut single, many) = if values.len() == width { (Some(values), Vec::new()) } else { (None, values) };
    let mut out = Vec::new();
    for (k, origin) in origins.into_iter().enumerate() {
        let features = single.take().unwrap_or_else(|| many[k * width..(k + 1) * width].to_vec());
        out.push(PredictionRecord {
            request_id: call.request_id.clone(),
            time_ms,
            as_of_ms: origin.as_of_ms,
            api: call.api,
            user_id: origin.user_id.to_owned(),
            platform: origin.platform.to_owned(),
            room_id: origin.room_id.to_owned(),
            model: answered.model.clone(),
            arm: answered.arm,
            experiment: experiment.to_owned(),
            experiment_arm: experiment_arm.to_owned(),
            features,
            outputs: scores.outputs.iter().flat_map(|o| &o.values[k * o.width..(k + 1) * o.width]).copied().collect(),
            queue_us: answered.queue.as_micros() as u64,
            compute_us: answered.compute.as_micros() as u64,
        });
    }
    out
}

/// Offers a request's records to the log.
pub fn offer(state: &AppState, records: Vec<PredictionRecord>) {
    if let Some(log) = &state.predictions {
        log.offer(records);
    }
}
