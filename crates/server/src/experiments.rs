//! Experiments in the server: which arm answers a row, the exposure logged before the
//! answer, the experiments folder, and `liveprofile.v1.ExperimentAdmin`.
//!
//! Definitions, exposures and outcome accumulators live in the profile store (one log,
//! one recovery); this module decides per row and speaks gRPC. A row is in an experiment
//! when the experiment is running now (inside its window, not stopped), one of its arms
//! changes the model asked for, no version was pinned, and the row's platform and
//! category are in its target. The user's arm comes from the experiment's salt and the
//! unified user id; its version is the one the arm names, or the stable version when the
//! arm leaves that model alone.

use crate::proto::v1::{self, experiment_admin_server::ExperimentAdmin};
use crate::state::AppState;
use liveprofile_events::Platform;
use liveprofile_experiments::{Experiment, Exposure, assign, check_conflicts, check_models};
use liveprofile_store::{ExperimentStatus, now_ms};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tonic::{Request, Response, Status};

/// Longest experiment definition accepted (file or request), in bytes.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;

/// Where an answer is used: platform, category and room, as the request says (or the
/// user's open visit).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswerContext {
    /// Platform, when given.
    pub platform: Option<Platform>,
    /// Category (empty when not given).
    pub category: String,
    /// Room (empty when not given).
    pub room_id: String,
}

impl AnswerContext {
    /// From request fields; an unknown platform, or a category or room over the event
    /// contract's size limits, is INVALID_ARGUMENT naming the row.
    pub fn parse(row: usize, platform: &str, category: &str, room_id: &str) -> Result<Self, Status> {
        for (field, value, limit) in [
            ("category", category, liveprofile_store::MAX_CATEGORY_BYTES),
            ("room_id", room_id, liveprofile_store::MAX_ID_BYTES),
            ("platform", platform, liveprofile_store::MAX_NAME_BYTES),
        ] {
            if value.len() > limit {
                return Err(Status::invalid_argument(format!(
                    "row {row}: {field} is {} bytes, over the limit of {limit} bytes",
                    value.len()
                )));
            }
        }
        let platform = if platform.is_empty() {
            None
        } else {
            Some(Platform::parse(platform).map_err(|e| Status::invalid_argument(format!("row {row}: {e}")))?)
        };
        Ok(AnswerContext { platform, category: category.to_owned(), room_id: room_id.to_owned() })
    }

    /// Takes platform and category from the user's open visit to the room, if the profile
    /// store has one.
    pub fn fill_from_visit(&mut self, state: &AppState, user_id: &str) {
        if let Some((platform, category)) = state.profiles.open_visit_context(user_id, &self.room_id) {
            self.platform = Some(platform);
            self.category = category;
        }
    }
}

/// A row routed to an experiment arm.
#[derive(Debug, Clone)]
pub struct Routed<'r> {
    /// The version the arm answers with (`None`: the stable version).
    pub version: Option<u32>,
    /// Experiment name.
    pub experiment: &'r str,
    /// Arm name.
    pub arm: &'r str,
    /// The exposure to log, when this is the user's first answer from the experiment.
    pub exposure: Option<Exposure>,
}

/// The experiments running now that change one model.
#[derive(Debug)]
pub struct ExperimentRouter<'a> {
    state: &'a AppState,
    model: &'a str,
    now_ms: i64,
    all: Arc<Vec<ExperimentStatus>>,
}

impl<'a> ExperimentRouter<'a> {
    /// `None` when no running experiment changes `model` (the common case costs one read
    /// of a shared list).
    pub fn for_model(state: &'a AppState, model: &'a str) -> Option<Self> {
        let all = state.profiles.experiments();
        if all.is_empty() {
            return None;
        }
        let now = now_ms();
        all.iter().any(|x| x.is_active_at(now) && x.experiment.changes(model)).then_some(ExperimentRouter {
            state,
            model,
            now_ms: now,
            all,
        })
    }

    /// The arm answering `user` in `context`, if an experiment covers the row.
    pub fn route(&self, user: &str, context: &AnswerContext) -> Option<Routed<'_>> {
        let platform = context.platform?;
        let x = self.all.iter().find(|x| {
            x.is_active_at(self.now_ms)
                && x.experiment.changes(self.model)
                && x.experiment.target.contains(platform, &context.category)
        })?;
        let unified = self.state.profiles.unified_user(Some(platform), user);
        if unified.len() > liveprofile_store::MAX_ID_BYTES {
            // Not a user the event contract could hold: the traffic policy answers.
            return None;
        }
        let e = &x.experiment;
        let arm = &e.arms[assign(e, &unified)];
        let exposure = (!self.state.profiles.is_exposed(&e.name, &unified)).then(|| Exposure {
            user_id: unified,
            experiment: e.name.clone(),
            arm: arm.name.clone(),
            ts_ms: self.now_ms,
            platform,
            category: context.category.clone(),
            room_id: (!context.room_id.is_empty()).then(|| context.room_id.clone()),
        });
        Some(Routed { version: arm.models.get(self.model).copied(), experiment: &e.name, arm: &arm.name, exposure })
    }
}

/// Logs the first exposures among `exposures` before the answer goes out; a failure to log
/// fails the answer (UNAVAILABLE), so no answer is given that the analysis cannot see.
pub async fn record_exposures(state: &AppState, exposures: Vec<Exposure>) -> Result<(), Status> {
    let fresh: Vec<Exposure> =
        exposures.into_iter().filter(|x| !state.profiles.is_exposed(&x.experiment, &x.user_id)).collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let store = state.profiles.clone();
    let n = tokio::task::spawn_blocking(move || store.record_exposures(&fresh))
        .await
        .map_err(|e| Status::internal(format!("exposure task failed: {e}")))?
        .map_err(|e| Status::unavailable(format!("the experiment exposure could not be logged: {e}")))?;
    state.metrics.experiment_exposures.inc_by(n as u64);
    Ok(())
}

/// A definition refused: INVALID_ARGUMENT naming the field.
fn definition_status(e: &liveprofile_experiments::DefinitionError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Checks a definition against the loaded models and the experiments held, then starts
/// it in the store. Returns whether it was new.
pub fn start_experiment(state: &AppState, e: &Experiment) -> Result<bool, Status> {
    let repo = state.repo()?;
    check_models(e, |model, version| repo.get(model, Some(version)).is_ok()).map_err(|x| definition_status(&x))?;
    let held = state.profiles.experiments();
    if let Some(same) = held.iter().find(|x| x.experiment.name == e.name) {
        if &same.experiment == e {
            return Ok(false);
        }
        return Err(Status::already_exists(format!(
            "experiment {}: name: an experiment of this name with another definition is held",
            e.name
        )));
    }
    let now = now_ms();
    let running = held.iter().filter(|x| x.stopped_ms.is_none() && x.experiment.end_ms > now).map(|x| &x.experiment);
    check_conflicts(e, running).map_err(|x| definition_status(&x))?;
    state.profiles.start_experiment(e.clone()).map_err(|x| match x {
        liveprofile_store::StoreError::Experiment(m) => Status::failed_precondition(m),
        other => crate::ingest::store_status(&other),
    })
}

/// The state of an experiment at `now`.
fn state_of(x: &ExperimentStatus, now: i64) -> v1::ExperimentState {
    if x.stopped_ms.is_some_and(|s| s <= now) {
        v1::ExperimentState::Stopped
    } else if now < x.experiment.start_ms {
        v1::ExperimentState::Scheduled
    } else if now >= x.experiment.end_ms {
        v1::ExperimentState::Ended
    } else {
        v1::ExperimentState::Running
    }
}

fn info(x: &ExperimentStatus) -> v1::ExperimentInfo {
    v1::ExperimentInfo {
        name: x.experiment.name.clone(),
        definition_toml: x.experiment.to_toml(),
        state: state_of(x, now_ms()) as i32,
        start_ms: x.experiment.start_ms,
        end_ms: x.experiment.end_ms,
        stopped_ms: x.stopped_ms,
        exposed_users: x.exposed_users,
        events: x.events,
        models: x.experiment.models().map(str::to_owned).collect(),
    }
}

/// Reads a definition file, refusing special files and files over the size limit.
pub fn read_definition(path: &Path) -> Result<Experiment, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_DEFINITION_BYTES as u64 {
        return Err(format!("{} is {} bytes, over the limit of {MAX_DEFINITION_BYTES}", path.display(), meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Experiment::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Watches the experiments folder: every `*.toml` file is a definition; a new or changed
/// file is checked and started, a refused one is logged with its reason (and tried again
/// when it changes). Deleting a file does not stop its experiment (StopExperiment does).
#[derive(Debug, Default)]
pub struct FolderWatch {
    seen: HashMap<PathBuf, Option<SystemTime>>,
}

impl FolderWatch {
    /// One pass over the folder (missing folder: nothing to do).
    pub fn scan(&mut self, state: &AppState, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "toml")
                || path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let modified = entry.metadata().ok().and_then(|m| m.modified().ok());
            if self.seen.get(&path) == Some(&modified) {
                continue;
            }
            self.seen.insert(path.clone(), modified);
            let outcome = read_definition(&path)
                .and_then(|e| start_experiment(state, &e).map(|new| (e.name, new)).map_err(|s| s.message().to_owned()));
            match outcome {
                Ok((name, true)) => tracing::info!(file = %path.display(), experiment = name, "experiment started"),
                Ok((_, false)) => {}
                Err(why) => tracing::error!(file = %path.display(), reason = why, "experiment definition refused"),
            }
        }
    }
}

/// Writes a definition into the experiments folder as `<name>.toml`, published by rename.
fn write_definition(dir: &Path, e: &Experiment) -> Result<(), Status> {
    std::fs::create_dir_all(dir).map_err(|err| Status::internal(format!("creating {}: {err}", dir.display())))?;
    liveprofile_publish::Publication::write_all(dir.join(format!("{}.toml", e.name)), e.to_toml().as_bytes())
        .map_err(|err| Status::internal(format!("writing the definition: {err}")))
}

/// The analysis of an experiment over the live accumulators: report.json and the
/// decision line.
pub fn live_results(state: &AppState, name: &str) -> Result<(ExperimentStatus, String, String), Status> {
    let table = state
        .profiles
        .experiment_table(name)
        .ok_or_else(|| Status::not_found(format!("no experiment named {name:?}")))?;
    let report = liveprofile_experiments::analyze(
        &table.status.experiment,
        &table.rows,
        &liveprofile_experiments::AnalysisOptions::default(),
    );
    let json = serde_json::to_string_pretty(&report).map_err(|e| Status::internal(format!("report: {e}")))?;
    Ok((table.status, json, report.decision.reason))
}

/// The experiment admin service.
#[derive(Debug, Clone)]
pub struct ExperimentAdminService {
    state: Arc<AppState>,
}

impl ExperimentAdminService {
    /// Creates the service.
    pub fn new(state: Arc<AppState>) -> Self {
        ExperimentAdminService { state }
    }
}

#[tonic::async_trait]
impl ExperimentAdmin for ExperimentAdminService {
    async fn create_experiment(
        &self,
        request: Request<v1::CreateExperimentRequest>,
    ) -> Result<Response<v1::CreateExperimentResponse>, Status> {
        let text = request.into_inner().definition_toml;
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(Status::invalid_argument(format!(
                "the definition is {} bytes, over the limit of {MAX_DEFINITION_BYTES}",
                text.len()
            )));
        }
        let e = Experiment::parse(&text).map_err(|x| definition_status(&x))?;
        let state = self.state.clone();
        let created = tokio::task::spawn_blocking(move || -> Result<(bool, String), Status> {
            let created = start_experiment(&state, &e)?;
            if created {
                write_definition(&state.config.experiments, &e)?;
            }
            Ok((created, e.name))
        })
        .await
        .map_err(|e| Status::internal(format!("create task failed: {e}")))??;
        let status = self.state.profiles.experiment_status(&created.1).ok_or_else(|| Status::internal("lost"))?;
        Ok(Response::new(v1::CreateExperimentResponse { experiment: Some(info(&status)), created: created.0 }))
    }

    async fn list_experiments(
        &self,
        _request: Request<v1::ListExperimentsRequest>,
    ) -> Result<Response<v1::ListExperimentsResponse>, Status> {
        let names: Vec<String> = self.state.profiles.experiments().iter().map(|x| x.experiment.name.clone()).collect();
        let experiments =
            names.iter().filter_map(|n| self.state.profiles.experiment_status(n)).map(|x| info(&x)).collect();
        Ok(Response::new(v1::ListExperimentsResponse { experiments }))
    }

    async fn stop_experiment(
        &self,
        request: Request<v1::StopExperimentRequest>,
    ) -> Result<Response<v1::StopExperimentResponse>, Status> {
        let name = request.into_inner().name;
        let store = self.state.profiles.clone();
        let stop_name = name.clone();
        let found = tokio::task::spawn_blocking(move || store.stop_experiment(&stop_name, now_ms()))
            .await
            .map_err(|e| Status::internal(format!("stop task failed: {e}")))?
            .map_err(|e| crate::ingest::store_status(&e))?;
        if !found {
            return Err(Status::not_found(format!("no experiment named {name:?}")));
        }
        let status = self.state.profiles.experiment_status(&name).ok_or_else(|| Status::internal("lost"))?;
        Ok(Response::new(v1::StopExperimentResponse { experiment: Some(info(&status)) }))
    }

    async fn get_experiment_results(
        &self,
        request: Request<v1::GetExperimentResultsRequest>,
    ) -> Result<Response<v1::GetExperimentResultsResponse>, Status> {
        let name = request.into_inner().name;
        let state = self.state.clone();
        let (status, report_json, decision) = tokio::task::spawn_blocking(move || live_results(&state, &name))
            .await
            .map_err(|e| Status::internal(format!("results task failed: {e}")))??;
        Ok(Response::new(v1::GetExperimentResultsResponse { experiment: Some(info(&status)), report_json, decision }))
    }
}
