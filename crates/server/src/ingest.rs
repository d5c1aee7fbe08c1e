//! `liveprofile.v1.Ingest` (events in over a client stream, one acknowledgement out) and
//! `liveprofile.v1.ProfileAdmin` (identity links, store figures, snapshots).

use crate::proto::v1::{self, ingest_server::Ingest, profile_admin_server::ProfileAdmin};
use crate::state::AppState;
use liveprofile_events::Platform;
use liveprofile_store::{IdentityLink, IncomingEvent, IngestReport, ProfileStore, StoreError};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status, Streaming};

/// Most per-event errors returned in one acknowledgement.
pub const MAX_ACK_ERRORS: usize = 1000;

/// The ingest service.
#[derive(Debug, Clone)]
pub struct IngestService {
    state: Arc<AppState>,
}

impl IngestService {
    /// Creates the service.
    pub fn new(state: Arc<AppState>) -> Self {
        IngestService { state }
    }
}

/// A protobuf event in the store's incoming form.
pub fn incoming(e: v1::LiveEvent) -> IncomingEvent {
    IncomingEvent {
        event_id: e.event_id,
        ts_ms: e.ts_ms,
        platform: e.platform,
        user_id: e.user_id,
        platform_user_id: e.platform_user_id,
        room_id: e.room_id,
        host_id: e.host_id,
        category: e.category,
        kind: e.kind,
        item_id: e.item_id,
        value: e.value,
        coupon: e.coupon,
    }
}

/// A store failure as a status. Nothing of a batch that failed was stored, so each is
/// safe to retry: a full disk is RESOURCE_EXHAUSTED (retry once there is room: health
/// `liveprofile.store` turns SERVING), another failed log write, or the store refusing
/// writes after a write it could not clear, UNAVAILABLE (retry later or elsewhere); any
/// other failure is INTERNAL.
pub fn store_status(e: &StoreError) -> Status {
    match e {
        StoreError::DiskFull { .. } => Status::resource_exhausted(e.to_string()),
        StoreError::WriteFailed { .. } | StoreError::Failed(_) => Status::unavailable(e.to_string()),
        StoreError::RecordTooLarge { .. } => Status::invalid_argument(e.to_string()),
        _ => Status::internal(format!("profile store: {e}")),
    }
}

/// Failed batches are logged at most once a second: on a full disk every producer's
/// every retry fails, and the health status `liveprofile.store` tells the rest.
static FAILURE_LOG: RateLimit = RateLimit::every_ms(1000);

/// Lets an action through at most once per period.
struct RateLimit {
    period_ms: i64,
    last_ms: std::sync::atomic::AtomicI64,
}

impl RateLimit {
    const fn every_ms(period_ms: i64) -> Self {
        RateLimit { period_ms, last_ms: std::sync::atomic::AtomicI64::new(i64::MIN / 2) }
    }

    /// Whether the action may run now (and if so, the period starts again).
    fn due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = liveprofile_store::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        now - last >= self.period_ms
            && self.last_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// Ingests one batch off the async runtime (the log write may wait for the disk). Shared,
/// so that a caller can retry the same batch without copying it. `transport` (`grpc`,
/// `mqtt`) labels the metrics (their `path` label) and the log.
pub async fn ingest_batch(
    state: &AppState,
    transport: &'static str,
    events: Arc<[IncomingEvent]>,
) -> Result<IngestReport, Status> {
    let store = state.profiles.clone();
    let started = Instant::now();
    let batch = events.clone();
    let trace = crate::traces::current();
    let (result, times) = tokio::task::spawn_blocking(move || store.ingest_shared(batch))
        .await
        .map_err(|e| Status::internal(format!("ingest task failed: {e}")))?;
    if let Some(t) = &trace {
        let attributes: crate::traces::Attributes = vec![("liveprofile.events", events.len().into())];
        for (name, phase) in
            [("check", times.check), ("log write", times.log_write), ("fsync", times.fsync), ("apply", times.apply)]
        {
            if let Some((start, end)) = phase {
                t.phase(name, start, end, attributes.clone());
            }
        }
    }
    let report = result.map_err(|e| {
            let status = store_status(&e);
            if status.code() != tonic::Code::InvalidArgument && FAILURE_LOG.due() {
                tracing::error!(transport, error = %e, "a batch was not stored (the client is told; nothing of it was applied)");
            }
            status
        })?;
    state.metrics.count_ingest(transport, &report, started.elapsed());
    let refused: std::collections::HashSet<usize> = report.errors.iter().map(|e| e.index).collect();
    state.metrics.observe_freshness(&events, &refused, liveprofile_store::now_ms());
    Ok(report)
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn ingest_events(
        &self,
        request: Request<Streaming<v1::EventBatch>>,
    ) -> Result<Response<v1::IngestAck>, Status> {
        let trace = crate::traces::current();
        let mut inbound = request.into_inner();
        let mut total = IngestReport::default();
        let mut seen = 0usize;
        while let Some(batch) = inbound.message().await? {
            let n = batch.events.len();
            if n == 0 {
                continue;
            }
            let events: Arc<[IncomingEvent]> = batch.events.into_iter().map(incoming).collect();
            let report = ingest_batch(&self.state, "grpc", events).await?;
            total.merge(report, seen);
            // Keep one error past the limit so that the answer can say it was cut.
            total.errors.truncate(MAX_ACK_ERRORS + 1);
            seen += n;
        }
        if let Some(t) = &trace {
            t.set([
                ("liveprofile.events", total.received.into()),
                ("liveprofile.events.accepted", total.accepted.into()),
            ]);
        }
        let truncated = total.errors.len() > MAX_ACK_ERRORS;
        total.errors.truncate(MAX_ACK_ERRORS);
        Ok(Response::new(v1::IngestAck {
            received: total.received,
            accepted: total.accepted,
            duplicates: total.duplicates,
            late: total.late,
            rejected: total.rejected,
            errors: total
                .errors
                .into_iter()
                .map(|e| v1::EventError { index: e.index as u64, event_id: e.event_id, late: e.late, reason: e.reason })
                .collect(),
            errors_truncated: truncated,
            last_sequence: total.last_seq,
            late_window_ms: ProfileStore::LATE_WINDOW_MS,
        }))
    }
}

/// The profile admin service (behind the admin token).
#[derive(Debug, Clone)]
pub struct ProfileAdminService {
    state: Arc<AppState>,
}

impl ProfileAdminService {
    /// Creates the service.
    pub fn new(state: Arc<AppState>) -> Self {
        ProfileAdminService { state }
    }
}

#[tonic::async_trait]
impl ProfileAdmin for ProfileAdminService {
    async fn upsert_identities(
        &self,
        request: Request<v1::UpsertIdentitiesRequest>,
    ) -> Result<Response<v1::UpsertIdentitiesResponse>, Status> {
        let r = request.into_inner();
        if r.links.is_empty() {
            return Err(Status::invalid_argument("no identity links in the request"));
        }
        let mut links = Vec::with_capacity(r.links.len());
        for (i, l) in r.links.into_iter().enumerate() {
            let platform =
                Platform::parse(&l.platform).map_err(|e| Status::invalid_argument(format!("link {i}: {e}")))?;
            let link = IdentityLink { platform, platform_user_id: l.platform_user_id, user_id: l.user_id };
            link.validate().map_err(|e| Status::invalid_argument(format!("link {i}: {e}")))?;
            links.push(link);
        }
        let store = self.state.profiles.clone();
        let upserted = tokio::task::spawn_blocking(move || store.upsert_identities(links))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| store_status(&e))?;
        Ok(Response::new(v1::UpsertIdentitiesResponse { upserted }))
    }

    async fn get_profile_store_stats(
        &self,
        _request: Request<v1::GetProfileStoreStatsRequest>,
    ) -> Result<Response<v1::ProfileStoreStats>, Status> {
        let s = self.state.profiles.stats();
        Ok(Response::new(v1::ProfileStoreStats {
            users: s.users,
            hosts: s.hosts,
            identities: s.identities,
            last_sequence: s.last_seq,
            snapshot_sequence: s.snapshot_seq,
            log_bytes: s.log_bytes,
            accepted: s.accepted,
            duplicates: s.duplicates,
            late: s.late,
            rejected: s.rejected,
            snapshots: s.snapshots,
            recovered_records: s.recovered_records,
            event_ids: s.event_ids,
            event_ids_evicted_early: s.event_ids_evicted_early,
            dedup_horizon_ms: s.dedup_horizon_ms,
            write_failures: s.write_failures,
            log_damage: s.log_damage,
            logged_batches: s.logged_batches,
            log_commits: s.log_commits,
        }))
    }

    async fn snapshot(&self, _request: Request<v1::SnapshotRequest>) -> Result<Response<v1::SnapshotResponse>, Status> {
        let store = self.state.profiles.clone();
        let sequence = tokio::task::spawn_blocking(move || store.snapshot())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| store_status(&e))?;
        Ok(Response::new(v1::SnapshotResponse { sequence }))
    }
}
