//! `liveprofile.v1.ModelAdmin`: list, load, unload, traffic policy, rollback, bundles and
//! divergence. Every call needs `authorization: Bearer <token>`; the check runs before the
//! call reaches the service.

use crate::proto::v1::{self, model_admin_server::ModelAdmin};
use crate::state::{AppState, route_status};
use liveprofile_runtime::{Canary, TrafficPolicy};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Checks the bearer token of admin calls.
#[derive(Clone)]
pub struct AdminAuth {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth").field("enabled", &self.token.is_some()).finish()
    }
}

impl AdminAuth {
    /// With the configured token; `None` (or a blank token, which the configuration
    /// refuses anyway) refuses every call.
    pub fn new(token: Option<&str>) -> Self {
        AdminAuth { token: token.filter(|t| !t.trim().is_empty()).map(Arc::from) }
    }

    /// The interceptor check.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Err(Status::unauthenticated("the admin API is disabled: the server has no admin token configured"));
        };
        let given = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("admin calls need the header authorization: Bearer <token>"))?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let Some(bearer) = given.strip_prefix("Bearer ") else {
            return Err(Status::unauthenticated("authorization header must be \"Bearer <token>\""));
        };
        if !constant_time_eq(bearer.as_bytes(), token.as_bytes()) {
            return Err(Status::unauthenticated("invalid admin token"));
        }
        Ok(request)
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// The admin service.
#[derive(Debug, Clone)]
pub struct AdminService {
    state: Arc<AppState>,
}

impl AdminService {
    /// Creates the service.
    pub fn new(state: Arc<AppState>) -> Self {
        AdminService { state }
    }
}

fn to_proto(p: TrafficPolicy) -> v1::TrafficPolicy {
    v1::TrafficPolicy {
        stable: p.stable,
        canary_version: p.canary.map(|c| c.version),
        canary_percent: p.canary.map_or(0.0, |c| c.percent),
        shadow_version: p.shadow,
    }
}

fn from_proto(p: &v1::TrafficPolicy) -> TrafficPolicy {
    TrafficPolicy {
        stable: p.stable,
        canary: p.canary_version.map(|version| Canary { version, percent: p.canary_percent }),
        shadow: p.shadow_version,
    }
}

#[tonic::async_trait]
impl ModelAdmin for AdminService {
    async fn list_models(&self, _: Request<v1::ListModelsRequest>) -> Result<Response<v1::ListModelsResponse>, Status> {
        let repo = self.state.repo()?;
        let models = repo
            .models()
            .into_iter()
            .map(|m| v1::ModelInfo {
                name: m.name,
                policy: m.policy.map(to_proto),
                versions: m
                    .versions
                    .iter()
                    .map(|v| v1::ModelVersion {
                        version: v.version(),
                        task: v.manifest().task.clone(),
                        manifest_json: serde_json::to_string(v.manifest()).unwrap_or_default(),
                        load_ms: v.load_ms(),
                    })
                    .collect(),
                refused: m
                    .refused
                    .into_iter()
                    .map(|(version, reason)| v1::RefusedVersion { version, reason })
                    .collect(),
            })
            .collect();
        Ok(Response::new(v1::ListModelsResponse { models }))
    }

    async fn load_model(
        &self,
        request: Request<v1::LoadModelRequest>,
    ) -> Result<Response<v1::LoadModelResponse>, Status> {
        let r = request.into_inner();
        let repo = self.state.repo()?.clone();
        // Loading compiles and checks the model: off the async runtime's threads.
        let loaded = tokio::task::spawn_blocking(move || repo.load_version(&r.name, r.version))
            .await
            .map_err(|e| Status::internal(format!("load task failed: {e}")))?
            .map_err(|e| route_status(&e))?;
        Ok(Response::new(v1::LoadModelResponse { load_ms: loaded.load_ms() }))
    }

    async fn unload_model(
        &self,
        request: Request<v1::UnloadModelRequest>,
    ) -> Result<Response<v1::UnloadModelResponse>, Status> {
        let r = request.into_inner();
        // A running experiment's arm answers with this version: unloading it would fail
        // that arm's answers.
        let now = liveprofile_store::now_ms();
        for x in
            self.state.profiles.experiments().iter().filter(|x| x.stopped_ms.is_none() && x.experiment.end_ms > now)
        {
            if let Some(arm) = x.experiment.arms.iter().find(|a| a.models.get(&r.name) == Some(&r.version)) {
                return Err(Status::failed_precondition(format!(
                    "model {} version {} answers arm {} of experiment {}; stop the experiment first",
                    r.name, r.version, arm.name, x.experiment.name
                )));
            }
        }
        // Unloading waits for a scan or load in progress (one at a time): off the async
        // runtime's threads, so that a slow load never stalls scoring, health or metrics.
        let repo = self.state.repo()?.clone();
        tokio::task::spawn_blocking(move || repo.unload(&r.name, r.version))
            .await
            .map_err(|e| Status::internal(format!("unload task failed: {e}")))?
            .map_err(|e| route_status(&e))?;
        Ok(Response::new(v1::UnloadModelResponse {}))
    }

    async fn set_traffic_policy(
        &self,
        request: Request<v1::SetTrafficPolicyRequest>,
    ) -> Result<Response<v1::SetTrafficPolicyResponse>, Status> {
        let r = request.into_inner();
        let policy = r.policy.as_ref().ok_or_else(|| Status::invalid_argument("policy is required"))?;
        if policy.canary_version.is_none() && policy.canary_percent != 0.0 {
            return Err(Status::invalid_argument("canary_percent is set without a canary_version"));
        }
        let repo = self.state.repo()?;
        repo.set_policy(&r.name, from_proto(policy)).map_err(|e| route_status(&e))?;
        let now = repo.policy(&r.name).map_err(|e| route_status(&e))?;
        tracing::info!(model = r.name, policy = ?now, "traffic policy set");
        Ok(Response::new(v1::SetTrafficPolicyResponse { policy: Some(to_proto(now)) }))
    }

    async fn rollback(&self, request: Request<v1::RollbackRequest>) -> Result<Response<v1::RollbackResponse>, Status> {
        let r = request.into_inner();
        let stable = self.state.repo()?.rollback(&r.name).map_err(|e| route_status(&e))?;
        tracing::info!(model = r.name, stable, "rolled back");
        Ok(Response::new(v1::RollbackResponse { stable }))
    }

    async fn pin_bundle(
        &self,
        request: Request<v1::PinBundleRequest>,
    ) -> Result<Response<v1::PinBundleResponse>, Status> {
        let r = request.into_inner();
        if r.members.is_empty() {
            return Err(Status::invalid_argument("a bundle needs at least one member"));
        }
        let members: Vec<(String, u32)> = r.members.into_iter().map(|m| (m.name, m.version)).collect();
        self.state.repo()?.pin_bundle(&members).map_err(|e| route_status(&e))?;
        tracing::info!(?members, "bundle pinned");
        Ok(Response::new(v1::PinBundleResponse {}))
    }

    async fn rollback_bundle(
        &self,
        _: Request<v1::RollbackBundleRequest>,
    ) -> Result<Response<v1::RollbackBundleResponse>, Status> {
        let restored = self.state.repo()?.rollback_bundle().map_err(|e| route_status(&e))?;
        Ok(Response::new(v1::RollbackBundleResponse {
            restored: restored
                .into_iter()
                .map(|(name, p)| v1::SetTrafficPolicyRequest { name, policy: Some(to_proto(p)) })
                .collect(),
        }))
    }

    async fn get_divergence(
        &self,
        _: Request<v1::GetDivergenceRequest>,
    ) -> Result<Response<v1::GetDivergenceResponse>, Status> {
        let divergences = self
            .state
            .shadow
            .divergence()
            .into_iter()
            .map(|((model, answered, compared), d)| v1::Divergence {
                model,
                answered_version: answered,
                compared_version: compared,
                rows: d.rows,
                mean_abs_diff: d.mean_abs_diff,
                max_abs_diff: d.max_abs_diff,
                dropped: d.dropped,
            })
            .collect();
        Ok(Response::new(v1::GetDivergenceResponse { divergences }))
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
