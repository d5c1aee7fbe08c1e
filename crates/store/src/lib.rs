//! The profile store: every user's online feature state, updated per event and read by
//! user id, kept durable by an append-only log and periodic snapshots.
//!
//! - Users are sharded by a hash of their id, each shard behind its own lock; the hosts'
//!   recent visits and orders (a conversion feature) are one shared book.
//! - [`ProfileStore::ingest`] checks each event against the contract, resolves a
//!   platform account to the unified user through the identity table, refuses
//!   duplicates (by `event_id`, for the duplicate horizon: [`StoreOptions::dedup_horizon`])
//!   and late events (older than the user's newest by more than
//!   [`ProfileStore::LATE_WINDOW_MS`]), logs the rest in one write, synced before it
//!   returns, and only then applies them with the feature pipeline's online driver. Only
//!   then is a batch acknowledged; a failed write (a full disk) leaves nothing of the batch
//!   behind, and later batches are taken once there is room.
//! - Opening the store locks its folder, loads the newest snapshot and replays the log
//!   after it; a torn last write (cut short by a crash, never acknowledged) is cleared, and
//!   any other loss of acknowledged records stops the start (see the log module) unless
//!   the operator accepts it.
//! - Snapshots are taken by a background thread after a number of records or a time;
//!   the segments and snapshots they cover are then deleted.

mod dedup;
mod error;
mod experiments;
mod identity;
mod incoming;
mod lock;
mod log;
mod snapshot;
mod store;

pub use dedup::{DEFAULT_DEDUP_HORIZON_MS, DEFAULT_DEDUP_MAX_IDS, MAX_DEDUP_HORIZON_MS};
pub use error::{LookupError, StoreError};
pub use experiments::{ExperimentStatus, ExperimentTable, MAX_EXPERIMENTS};
pub use identity::{IdentityLink, IdentityTable, read_identity_file};
pub use incoming::{
    EventRejection, IncomingEvent, IngestReport, MAX_CATEGORY_BYTES, MAX_CLOCK_SKEW_MS, MAX_EVENT_RECORD_BYTES,
    MAX_ID_BYTES, MAX_NAME_BYTES, Outcome,
};
pub use log::{DEFAULT_SEGMENT_BYTES, Durability, LogDamage, MAX_RECORD_BYTES};
pub use store::{
    IngestTimes, MAX_GROUP_EVENTS, ProfileFeatures, ProfileStore, StoreOptions, StoreStats, Unreflected, now_ms,
};
