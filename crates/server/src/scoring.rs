//! `liveprofile.v1.Scoring`: tags and conversion likelihood for one or many users, and a
//! bidirectional stream of both.

use crate::batcher::Job;
use crate::experiments::{AnswerContext, ExperimentRouter};
use crate::predictions::{self, Call};
use crate::proto::v1::{self, scoring_server::Scoring};
use crate::state::{AppState, bounded, input_status, output_names, route_status};
use liveprofile_runtime::{Arm, InputError, LoadedModel};
use liveprofile_store::{LookupError, ProfileFeatures};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Model answering tag calls when the request names none.
pub const DEFAULT_TAGS_MODEL: &str = "user_tags";
/// Model answering conversion calls when the request names none.
pub const DEFAULT_CONVERSION_MODEL: &str = "conversion";

/// The scoring service.
#[derive(Debug, Clone)]
pub struct ScoringService {
    state: Arc<AppState>,
}

impl ScoringService {
    /// Creates the service.
    pub fn new(state: Arc<AppState>) -> Self {
        ScoringService { state }
    }
}

/// Where a row's feature values come from.
pub(crate) enum RowValues<'a> {
    /// Sent by the caller.
    Given(&'a v1::Features),
    /// Read from the profile store, built with the schema of this hash.
    Profile { features: ProfileFeatures, schema_hash: &'static str },
}

impl RowValues<'_> {
    /// The time features built from the profile describe (`None` for given features).
    fn as_of_ms(&self) -> Option<i64> {
        match self {
            RowValues::Given(_) => None,
            RowValues::Profile { features, .. } => Some(features.as_of_ms),
        }
    }

    fn profile_time(&self) -> Option<v1::ProfileTime> {
        match self {
            RowValues::Given(_) => None,
            RowValues::Profile { features, .. } => Some(v1::ProfileTime {
                as_of_ms: features.as_of_ms,
                last_event_ms: features.last_event_ms.unwrap_or_default(),
            }),
        }
    }
}

/// Hash of the user-feature schema the profile store builds.
fn user_schema_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| liveprofile_features::user_schema().hash)
}

/// Hash of the conversion schema the profile store builds.
fn conversion_schema_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| liveprofile_features::conversion_schema().hash)
}

/// A profile lookup's failure as a status.
fn lookup_status(e: &LookupError) -> Status {
    match e {
        LookupError::UnknownUser(_) => Status::not_found(e.to_string()),
        LookupError::NoOpenVisit { .. } => Status::failed_precondition(e.to_string()),
        LookupError::InPast { .. } | LookupError::InFuture { .. } => Status::invalid_argument(e.to_string()),
    }
}

/// One scored row: the first output's values and who produced them.
struct Scored {
    values: Vec<f32>,
    model: v1::ModelRef,
    /// The version that scored the row (stable, canary or pinned).
    loaded: Arc<LoadedModel>,
}

struct Group {
    model: Arc<LoadedModel>,
    arm: v1::Arm,
    /// The experiment and arm that answered, for experiment groups.
    experiment: Option<(String, String)>,
    compare: Vec<Arc<LoadedModel>>,
    rows: Vec<usize>,
}

/// One row to score: who, where the answer is used, and where its features come from.
pub(crate) struct Row<'a> {
    pub(crate) user: &'a str,
    pub(crate) context: AnswerContext,
    pub(crate) values: RowValues<'a>,
}

/// Routes, validates and scores rows; answers in request order. The callers have checked
/// the row count (before any profile lookup).
async fn score_rows(
    state: &AppState,
    model_name: &str,
    version: Option<u32>,
    schema_hash: &str,
    rows: &[Row<'_>],
    deadline: Option<Instant>,
    call: Option<&Call>,
) -> Result<(Vec<Scored>, v1::Timing), Status> {
    let repo = state.repo()?;
    // Group rows by the version (and experiment arm) that answers them.
    let mut groups: Vec<Group> = Vec::new();
    let mut add = |model: Arc<LoadedModel>,
                   arm: v1::Arm,
                   experiment: Option<(String, String)>,
                   compare: Vec<Arc<LoadedModel>>,
                   row: usize| match groups
        .iter_mut()
        .find(|g| Arc::ptr_eq(&g.model, &model) && g.arm == arm && g.experiment == experiment)
    {
        Some(g) => g.rows.push(row),
        None => groups.push(Group { model, arm, experiment, compare, rows: vec![row] }),
    };
    // A pinned version is looked up once per request, not once per row; a pinned answer
    // is never an experiment's.
    let pinned = version.map(|v| repo.get(model_name, Some(v)).map_err(|e| route_status(&e))).transpose()?;
    let router = if pinned.is_none() { ExperimentRouter::for_model(state, model_name) } else { None };
    let mut exposures = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let user = row.user;
        if user.is_empty() {
            return Err(Status::invalid_argument(format!("row {i}: user_id is empty")));
        }
        check_user_id(i, user)?;
        if let Some(routed) = router.as_ref().and_then(|r| r.route(user, &row.context)) {
            let model = match routed.version {
                Some(v) => repo.get(model_name, Some(v)),
                None => repo.get(model_name, None),
            }
            .map_err(|e| route_status(&e))?;
            let label = (routed.experiment.to_owned(), routed.arm.to_owned());
            exposures.extend(routed.exposure);
            add(model, v1::Arm::Experiment, Some(label), vec![], i);
            continue;
        }
        match &pinned {
            Some(model) => add(model.clone(), v1::Arm::Pinned, None, vec![], i),
            None => {
                let route = repo.route(model_name, user).map_err(|e| route_status(&e))?;
                let arm = match route.arm {
                    Arm::Stable => v1::Arm::Stable,
                    Arm::Canary => v1::Arm::Canary,
                };
                add(route.model, arm, None, route.compare, i);
            }
        }
    }
    // Validate every group before queueing any, so a bad row fails the request at once.
    let mut jobs = Vec::with_capacity(groups.len());
    // The values as scored, per group, for the prediction log.
    let mut logged: Vec<Vec<f32>> = Vec::new();
    for g in &groups {
        let mut values = Vec::with_capacity(g.rows.len() * g.model.width());
        for &i in &g.rows {
            match &rows[i].values {
                RowValues::Given(features) => {
                    dense_row(&g.model, schema_hash, i, features, &mut values).map_err(|e| input_status(&e))?
                }
                RowValues::Profile { features, schema_hash: built } => {
                    let wanted = &g.model.schema().hash;
                    if wanted != built {
                        return Err(Status::failed_precondition(format!(
                            "row {i}: model {} version {} reads feature schema {wanted}, the profile store builds \
                             {built}; send the features with the request",
                            g.model.name(),
                            g.model.version()
                        )));
                    }
                    values.extend_from_slice(&features.values);
                }
            }
        }
        g.model.validate(&values, g.rows.len()).map_err(|e| {
            // validate() numbers rows within the group; report the request's row.
            input_status(&renumber(e, &g.rows))
        })?;
        if call.is_some() {
            logged.push(values.clone());
        }
        jobs.push(Job { model: g.model.clone(), values, rows: g.rows.len(), compare: g.compare.clone(), deadline });
    }
    let trace = crate::traces::current();
    if let Some(t) = &trace {
        t.validated(vec![("liveprofile.rows", rows.len().into()), ("liveprofile.groups", groups.len().into())]);
    }
    let mut results: Vec<Option<Scored>> = (0..rows.len()).map(|_| None).collect();
    let mut timing = v1::Timing::default();
    let outcomes = submit_all_then_wait(state, jobs).await;
    // Each group's outcome, kept for the prediction log's records.
    let mut scored_groups = Vec::new();
    for (k_group, (g, outcome)) in groups.iter().zip(outcomes).enumerate() {
        let version = g.model.version();
        let arm_name = arm_name(g.arm);
        let outcome = match outcome {
            Ok(o) => o,
            Err(status) => {
                state.count(model_name, Some(version), arm_name, Err(status.code()));
                return Err(status);
            }
        };
        state.count(model_name, Some(version), arm_name, Ok(()));
        if let Some(t) = &trace {
            let attributes = traced_group(&g.model, arm_name, g.rows.len());
            // The call's own span: the model always (one model a call); the version, arm
            // and rows of its only group, or of none when it was split (each group's
            // spans carry theirs, the call's rows and groups were noted when validated).
            if k_group == 0 {
                let whole = groups.len() == 1;
                t.set(attributes.iter().filter(|(k, _)| whole || *k == "liveprofile.model").cloned());
            }
            crate::traces::scored(t, &outcome, attributes);
        }
        timing.queue_us = timing.queue_us.max(outcome.queue.as_micros() as u64);
        timing.compute_us = timing.compute_us.max(outcome.compute.as_micros() as u64);
        let first = &outcome.scores.outputs[0];
        for (k, &i) in g.rows.iter().enumerate() {
            let (experiment, experiment_arm) = g.experiment.clone().unwrap_or_default();
            results[i] = Some(Scored {
                values: first.values[k * first.width..(k + 1) * first.width].to_vec(),
                model: v1::ModelRef {
                    name: g.model.name().to_owned(),
                    version,
                    arm: g.arm as i32,
                    experiment,
                    experiment_arm,
                },
                loaded: g.model.clone(),
            });
        }
        if call.is_some() {
            scored_groups.push((k_group, outcome));
        }
    }
    // Exposures are durable before any answer leaves, and only for answers that were
    // scored (a failure that depends on the arm must not count its users as exposed).
    crate::experiments::record_exposures(state, exposures).await?;
    observe_first_answers(state, rows);
    if let Some(call) = call {
        let mut records = Vec::with_capacity(rows.len());
        for (k_group, outcome) in &scored_groups {
            let g = &groups[*k_group];
            let answered = predictions::Answered {
                model: &g.model,
                arm: arm_name(g.arm),
                experiment: g.experiment.as_ref().map(|(x, a)| (x.as_str(), a.as_str())),
                queue: outcome.queue,
                compute: outcome.compute,
            };
            let origins = g.rows.iter().map(|&i| predictions::RowOrigin {
                user_id: rows[i].user,
                platform: rows[i].context.platform.map_or("", |p| p.as_str()),
                room_id: &rows[i].context.room_id,
                as_of_ms: rows[i].values.as_of_ms(),
            });
            predictions::records(&mut records, call, &answered, origins, &logged[*k_group], &outcome.scores);
        }
        predictions::offer(state, &records);
    }
    Ok((results.into_iter().map(|r| r.expect("every row is in one group")).collect(), timing))
}

/// A scoring row's user id is held to the event contract's id limit (the profile store,
/// experiments and the prediction log keep it): INVALID_ARGUMENT naming the row.
pub(crate) fn check_user_id(row: usize, user: &str) -> Result<(), Status> {
    let limit = liveprofile_store::MAX_ID_BYTES;
    if user.len() > limit {
        return Err(Status::invalid_argument(format!(
            "row {row}: user_id is {} bytes, over the limit of {limit} bytes",
            user.len()
        )));
    }
    Ok(())
}

/// Freshness: the answer is made, so the events its profile rows reflect for the first
/// time are answered now.
fn observe_first_answers(state: &AppState, rows: &[Row<'_>]) {
    let mut now = None;
    for row in rows {
        if let RowValues::Profile { features, .. } = &row.values
            && !features.first_reflected.is_empty()
        {
            let now = *now.get_or_insert_with(liveprofile_store::now_ms);
            state.metrics.observe_first_answer(&features.first_reflected, now);
            state.profiles.answered(row.user, &features.first_reflected);
        }
    }
}

/// Trace attributes of the rows a version answered.
pub(crate) fn traced_group(model: &LoadedModel, arm: &'static str, rows: usize) -> crate::traces::Attributes {
    vec![
        ("liveprofile.model", model.name().into()),
        ("liveprofile.model.version", model.version().into()),
        ("liveprofile.arm", crate::traces::Value::Static(arm)),
        ("liveprofile.rows", rows.into()),
    ]
}

/// Notes the start of a traced call's handler and the caller's request id; the trace, if
/// the call is traced.
pub(crate) fn enter_trace(metadata: &tonic::metadata::MetadataMap) -> Option<Arc<crate::traces::RequestTrace>> {
    let trace = crate::traces::current()?;
    trace.enter();
    if let Some(id) = predictions::request_id_of(metadata).filter(|id| id.len() <= predictions::MAX_REQUEST_ID_BYTES) {
        trace.set([("liveprofile.request_id", id.into())]);
    }
    Some(trace)
}

/// Submits every job, then waits for all of them (they run concurrently in the batcher).
async fn submit_all_then_wait(state: &AppState, jobs: Vec<Job>) -> Vec<Result<crate::batcher::Outcome, Status>> {
    let pending: Vec<_> = jobs.into_iter().map(|j| state.submit(j)).collect();
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        out.push(match p {
            Ok(p) => p.wait().await,
            Err(s) => Err(s),
        });
    }
    out
}

/// The arm's name in metrics and answers (KServe's `arm` parameter too).
pub(crate) fn arm_name(arm: v1::Arm) -> &'static str {
    match arm {
        v1::Arm::Stable => Arm::Stable.as_str(),
        v1::Arm::Canary => Arm::Canary.as_str(),
        v1::Arm::Pinned => "pinned",
        v1::Arm::Experiment => "experiment",
        v1::Arm::Unspecified => "",
    }
}

fn renumber(e: InputError, rows: &[usize]) -> InputError {
    let map = |r: usize| rows.get(r).copied().unwrap_or(r);
    match e {
        InputError::WrongWidth { row, got, expected } => InputError::WrongWidth { row: map(row), got, expected },
        InputError::Missing { row, feature } => InputError::Missing { row: map(row), feature },
        InputError::Unknown { row, feature } => InputError::Unknown { row: map(row), feature },
        InputError::NotFinite { row, feature, value } => InputError::NotFinite { row: map(row), feature, value },
        InputError::BadCategory { row, feature, value, size } => {
            InputError::BadCategory { row: map(row), feature, value, size }
        }
        InputError::BadBool { row, feature, value } => InputError::BadBool { row: map(row), feature, value },
        other => other,
    }
}

/// Appends one row in schema order from named or dense features.
fn dense_row(
    model: &LoadedModel,
    schema_hash: &str,
    row: usize,
    features: &v1::Features,
    out: &mut Vec<f32>,
) -> Result<(), InputError> {
    match features.values.as_ref() {
        None => Err(InputError::Missing { row, feature: "features (named or dense)".to_owned() }),
        Some(v1::features::Values::Named(named)) => {
            model.dense_from_named(row, named.values.iter().map(|(k, v)| (k.as_str(), *v)), out)
        }
        Some(v1::features::Values::Dense(dense)) => {
            if schema_hash.is_empty() {
                return Err(InputError::SchemaHash {
                    given: "(none; dense rows need the schema_hash)".to_owned(),
                    expected: model.schema().hash.clone(),
                });
            }
            model.check_schema_hash(schema_hash)?;
            if dense.values.len() != model.width() {
                return Err(InputError::WrongWidth { row, got: dense.values.len(), expected: model.width() });
            }
            out.extend_from_slice(&dense.values);
            Ok(())
        }
    }
}

fn model_or<'a>(name: &'a str, default: &'a str) -> &'a str {
    if name.is_empty() { default } else { name }
}

/// Answers a tags request.
pub async fn score_tags(
    state: &AppState,
    r: &v1::ScoreTagsRequest,
    deadline: Option<Instant>,
    call: Option<&Call>,
) -> Result<v1::ScoreTagsResponse, Status> {
    let name = model_or(&r.model, DEFAULT_TAGS_MODEL);
    state.check_rows(r.users.len())?;
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(r.users.len());
    for (i, u) in r.users.iter().enumerate() {
        let context = AnswerContext::parse(i, &u.platform, &u.category, &u.room_id)?;
        let values = match &u.features {
            Some(f) => RowValues::Given(f),
            None => {
                if u.user_id.is_empty() {
                    return Err(Status::invalid_argument(format!("row {i}: user_id is empty")));
                }
                let features = state.profiles.user_features(&u.user_id, u.as_of_ms).map_err(|e| lookup_status(&e))?;
                RowValues::Profile { features, schema_hash: user_schema_hash() }
            }
        };
        rows.push(Row { user: u.user_id.as_str(), context, values });
    }
    // Check the tag filter against the model before scoring.
    let model = state.repo()?.get(name, r.version).map_err(|e| route_status(&e))?;
    let tags = output_names(&model);
    if let Some(t) = r.tags.iter().find(|t| !tags.contains(t)) {
        return Err(Status::invalid_argument(format!("unknown tag {t:?}; model {name} has {}", tags.join(", "))));
    }
    let (scored, mut timing) = score_rows(state, name, r.version, &r.schema_hash, &rows, deadline, call).await?;
    let segments = if r.include_segment {
        let (segments, t) = segments_of(state, &scored, deadline).await?;
        timing.queue_us += t.queue_us;
        timing.compute_us += t.compute_us;
        Some(segments)
    } else {
        None
    };
    let mut segments = segments.map(Vec::into_iter);
    let users = scored
        .into_iter()
        .zip(&r.users)
        .zip(&rows)
        .map(|((s, u), row)| {
            let source = &row.values;
            // Each row is labelled with the names of the version that scored it (a canary
            // may differ from stable).
            let tags = output_names(&s.loaded);
            let mut picked: Vec<v1::TagScore> = if r.tags.is_empty() {
                s.values.iter().enumerate().map(|(i, p)| tag_score(tags, i, *p)).collect()
            } else {
                let wanted = r.tags.iter().filter_map(|t| tags.iter().position(|x| x == t));
                wanted.map(|i| tag_score(tags, i, s.values[i])).collect()
            };
            if r.top_k > 0 {
                picked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
                picked.truncate(r.top_k as usize);
            }
            v1::UserTags {
                user_id: u.user_id.clone(),
                tags: picked,
                model: Some(s.model),
                profile: source.profile_time(),
                segment: segments.as_mut().and_then(Iterator::next),
            }
        })
        .collect();
    Ok(v1::ScoreTagsResponse { users, timing: Some(timing) })
}

/// Model answering segment requests.
pub const SEGMENT_MODEL: &str = "user_segments";

/// Each user's segment: the tag probabilities through the segment model (its stable
/// version), nearest centroid first.
async fn segments_of(
    state: &AppState,
    scored: &[Scored],
    deadline: Option<Instant>,
) -> Result<(Vec<v1::Segment>, v1::Timing), Status> {
    let repo = state.repo()?;
    let model = repo
        .get(SEGMENT_MODEL, None)
        .map_err(|e| Status::failed_precondition(format!("include_segment needs the {SEGMENT_MODEL} model: {e}")))?;
    // The segment model's inputs are tag names: they must be the outputs of the version
    // that scored each row.
    let inputs = model.manifest().inputs.first().map_or(&[][..], |i| i.features.as_slice());
    let mut checked: Vec<&Arc<LoadedModel>> = Vec::new();
    for s in scored {
        if checked.iter().any(|m| Arc::ptr_eq(m, &s.loaded)) {
            continue;
        }
        if inputs != output_names(&s.loaded) {
            return Err(Status::failed_precondition(format!(
                "{SEGMENT_MODEL} version {} was fitted on other tags than {} version {} gives",
                model.version(),
                s.loaded.name(),
                s.loaded.version()
            )));
        }
        checked.push(&s.loaded);
    }
    let mut values = Vec::with_capacity(scored.len() * model.width());
    for s in scored {
        values.extend_from_slice(&s.values);
    }
    model.validate(&values, scored.len()).map_err(|e| input_status(&e))?;
    let outcome =
        state.score(Job { model: model.clone(), values, rows: scored.len(), compare: vec![], deadline }).await?;
    if let Some(t) = crate::traces::current() {
        crate::traces::scored(&t, &outcome, traced_group(&model, arm_name(v1::Arm::Stable), scored.len()));
    }
    let distances = &outcome.scores.outputs[0];
    let specs = model.manifest().segmentation.as_ref().map_or(&[][..], |s| &s.segments[..]);
    let described: Vec<(String, String)> = (0..distances.width)
        .map(|i| match specs.get(i) {
            Some(s) => (s.name.clone(), s.description.clone()),
            None => (format!("segment_{i}"), String::new()),
        })
        .collect();
    let segments = (0..scored.len())
        .map(|row| {
            let d = &distances.values[row * distances.width..(row + 1) * distances.width];
            // Nearest centroid; the first on a tie, as the analysis assigns.
            let (id, distance) = d
                .iter()
                .copied()
                .enumerate()
                .fold((0, f32::INFINITY), |best, (i, x)| if x < best.1 { (i, x) } else { best });
            v1::Segment {
                id: id as u32,
                name: described[id].0.clone(),
                description: described[id].1.clone(),
                distance,
                model: Some(v1::ModelRef {
                    name: SEGMENT_MODEL.to_owned(),
                    version: model.version(),
                    arm: v1::Arm::Stable as i32,
                    ..Default::default()
                }),
            }
        })
        .collect();
    let timing =
        v1::Timing { queue_us: outcome.queue.as_micros() as u64, compute_us: outcome.compute.as_micros() as u64 };
    Ok((segments, timing))
}

fn tag_score(tags: &[String], i: usize, p: f32) -> v1::TagScore {
    v1::TagScore { tag: tags.get(i).cloned().unwrap_or_else(|| format!("output_{i}")), probability: p }
}

/// Answers a conversion request.
pub async fn score_conversion(
    state: &AppState,
    r: &v1::ScoreConversionRequest,
    deadline: Option<Instant>,
    call: Option<&Call>,
) -> Result<v1::ScoreConversionResponse, Status> {
    let name = model_or(&r.model, DEFAULT_CONVERSION_MODEL);
    state.check_rows(r.candidates.len())?;
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(r.candidates.len());
    for (i, c) in r.candidates.iter().enumerate() {
        let mut context = AnswerContext::parse(i, &c.platform, &c.category, &c.room_id)?;
        if context.platform.is_none() && context.category.is_empty() && !c.room_id.is_empty() {
            context.fill_from_visit(state, &c.user_id);
        }
        let values = match &c.features {
            Some(f) => RowValues::Given(f),
            None => {
                if c.user_id.is_empty() || c.room_id.is_empty() {
                    return Err(Status::invalid_argument(format!(
                        "row {i}: scoring from the profile needs user_id and room_id"
                    )));
                }
                let features =
                    state.profiles.conversion_features(&c.user_id, &c.room_id).map_err(|e| lookup_status(&e))?;
                RowValues::Profile { features, schema_hash: conversion_schema_hash() }
            }
        };
        rows.push(Row { user: c.user_id.as_str(), context, values });
    }
    let (scored, timing) = score_rows(state, name, r.version, &r.schema_hash, &rows, deadline, call).await?;
    let scores = scored
        .into_iter()
        .zip(&r.candidates)
        .zip(&rows)
        .map(|((s, c), row)| v1::ConversionScore {
            user_id: c.user_id.clone(),
            room_id: c.room_id.clone(),
            probability: s.values[0],
            model: Some(s.model),
            profile: row.values.profile_time(),
        })
        .collect();
    Ok(v1::ScoreConversionResponse { scores, timing: Some(timing) })
}

/// Failures not counted per version (unknown model, bad input before routing) are counted
/// under the model name alone (or the unknown-model label); every error message is capped.
fn counted<T>(state: &AppState, model: &str, r: Result<T, Status>) -> Result<T, Status> {
    if let Err(s) = &r
        && matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::NotFound | tonic::Code::Unavailable)
    {
        state.count(model, None, "", Err(s.code()));
    }
    r.map_err(bounded)
}

/// The status that ends a score stream whose inbound side failed after `received` good
/// requests. A request that cannot be decoded (bad protobuf, bad frame, truncated message)
/// is the caller's fault: INVALID_ARGUMENT, where tonic says INTERNAL. A request over the
/// message limit is RESOURCE_EXHAUSTED. Anything else (the transport) is passed on.
fn inbound_status(status: Status, received: u64) -> Status {
    const UNDECODABLE: &[&str] = &[
        "failed to decode Protobuf message",
        "protocol error",
        "Unexpected EOF decoding stream",
        "Error decompressing",
    ];
    let request = received + 1;
    // The server's codec says INVALID_ARGUMENT for a message that does not decode; tonic's
    // framing, INTERNAL.
    let undecodable = match status.code() {
        tonic::Code::InvalidArgument => status.message().strip_prefix(crate::limits::UNDECODABLE),
        tonic::Code::Internal => UNDECODABLE.iter().any(|p| status.message().starts_with(p)).then(|| status.message()),
        _ => None,
    };
    if let Some(why) = undecodable {
        return bounded(Status::invalid_argument(format!(
            "score stream request {request} cannot be decoded ({why}); the {received} requests before it were \
             answered, the stream ends here"
        )));
    }
    match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => bounded(Status::resource_exhausted(format!(
            "score stream request {request} is too large ({}); the {received} requests before it were answered, \
             the stream ends here",
            status.message()
        ))),
        _ => bounded(status),
    }
}

/// What the inbound side hands to the outbound side, in order.
enum Inbound {
    /// A request being answered.
    Answer(tokio::task::JoinHandle<v1::ScoreStreamResponse>),
    /// The inbound side failed: the last item of the response stream.
    End(Status),
}

type ScoreStreamOut = Pin<Box<dyn Stream<Item = Result<v1::ScoreStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Scoring for ScoringService {
    async fn score_tags(
        &self,
        request: Request<v1::ScoreTagsRequest>,
    ) -> Result<Response<v1::ScoreTagsResponse>, Status> {
        let _trace = enter_trace(request.metadata());
        let deadline = crate::state::deadline_of(request.metadata())?;
        let call = predictions::call(&self.state, "v1.ScoreTags", predictions::request_id_of(request.metadata()));
        let r = request.into_inner();
        let result = score_tags(&self.state, &r, deadline, call.as_ref()).await;
        counted(&self.state, model_or(&r.model, DEFAULT_TAGS_MODEL), result).map(Response::new)
    }

    async fn score_conversion(
        &self,
        request: Request<v1::ScoreConversionRequest>,
    ) -> Result<Response<v1::ScoreConversionResponse>, Status> {
        let _trace = enter_trace(request.metadata());
        let deadline = crate::state::deadline_of(request.metadata())?;
        let call = predictions::call(&self.state, "v1.ScoreConversion", predictions::request_id_of(request.metadata()));
        let r = request.into_inner();
        let result = score_conversion(&self.state, &r, deadline, call.as_ref()).await;
        counted(&self.state, model_or(&r.model, DEFAULT_CONVERSION_MODEL), result).map(Response::new)
    }

    type ScoreStreamStream = ScoreStreamOut;

    async fn score_stream(
        &self,
        request: Request<Streaming<v1::ScoreStreamRequest>>,
    ) -> Result<Response<Self::ScoreStreamStream>, Status> {
        let mut inbound = request.into_inner();
        // Requests run concurrently (up to the pipeline depth) and are answered in order. A
        // request that cannot be read ends the stream with its error, after the answers to
        // the requests before it.
        const PIPELINE: usize = 64;
        let (pending_tx, mut pending_rx) = mpsc::channel::<Inbound>(PIPELINE);
        let (out_tx, out_rx) = mpsc::channel(PIPELINE);
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut received = 0u64;
            loop {
                let message = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        let status = inbound_status(status, received);
                        tracing::debug!(%status, "score stream ends on a request that cannot be read");
                        let _ = pending_tx.send(Inbound::End(status)).await;
                        break;
                    }
                };
                received += 1;
                let state = state.clone();
                let task = tokio::spawn(async move { answer_stream_request(&state, message).await });
                if pending_tx.send(Inbound::Answer(task)).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(next) = pending_rx.recv().await {
                let task = match next {
                    Inbound::Answer(task) => task,
                    Inbound::End(status) => {
                        let _ = out_tx.send(Err(status)).await;
                        break;
                    }
                };
                let answer = match task.await {
                    Ok(a) => a,
                    Err(e) => v1::ScoreStreamResponse {
                        request_id: String::new(),
                        response: Some(v1::score_stream_response::Response::Error(v1::StreamError {
                            code: tonic::Code::Internal as i32,
                            message: format!("request task failed: {e}"),
                        })),
                    },
                };
                if out_tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

async fn answer_stream_request(state: &AppState, m: v1::ScoreStreamRequest) -> v1::ScoreStreamResponse {
    use v1::score_stream_response::Response as Out;
    let call = predictions::call(state, "v1.ScoreStream", Some(&m.request_id));
    let result = match &m.request {
        Some(v1::score_stream_request::Request::Tags(r)) => {
            let res = score_tags(state, r, None, call.as_ref()).await;
            counted(state, model_or(&r.model, DEFAULT_TAGS_MODEL), res).map(Out::Tags)
        }
        Some(v1::score_stream_request::Request::Conversion(r)) => {
            let res = score_conversion(state, r, None, call.as_ref()).await;
            counted(state, model_or(&r.model, DEFAULT_CONVERSION_MODEL), res).map(Out::Conversion)
        }
        None => Err(Status::invalid_argument("stream request has neither tags nor conversion")),
    };
    let response = match result {
        Ok(r) => r,
        Err(s) => Out::Error(v1::StreamError { code: s.code() as i32, message: s.message().to_owned() }),
    };
    v1::ScoreStreamResponse { request_id: m.request_id, response: Some(response) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn undecodable_stream_requests_are_invalid_argument() {
        // What tonic's protobuf decoder answers for a truncated message.
        let decode = v1::ScoreStreamRequest::decode(&[0x0a, 0x05, 0x01][..]).unwrap_err();
        let s = inbound_status(Status::internal(decode.to_string()), 2);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().starts_with("score stream request 3 cannot be decoded"), "{}", s.message());
        let s = inbound_status(Status::internal("Unexpected EOF decoding stream."), 0);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = inbound_status(
            Status::out_of_range("Error, decoded message length too large: found 99 bytes, the limit is: 9 bytes"),
            0,
        );
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        // The transport's own failures are passed on.
        assert_eq!(inbound_status(Status::internal("h2 protocol error"), 0).code(), tonic::Code::Internal);
        assert_eq!(inbound_status(Status::unknown("connection reset"), 0).code(), tonic::Code::Unknown);
    }
}
