//! The profile store: every user's online feature state, updated per event and read by
//! user id, kept durable by an append-only log and periodic snapshots.
//!
//! - Users are sharded by a hash of their id, each shard behind its own lock; the hosts'
//!   recent visits and orders (a conversion feature) are one shared book.
//! - [`ProfileStore::ingest`] checks each event against the contract, resolves a
//!   platform account to the unified user through the identity table, refuses
//!   duplicates (by `event_id`) and late events (older than the user's newest by more
//!   than [`ProfileStore::LATE_WINDOW_MS`]), applies the rest with the feature
//!   pipeline's online driver and appends them to the log in one write, synced before it
//!   returns. Only then is a batch acknowledged.
//! - Opening the store loads the newest snapshot and replays the log after it; a torn
//!   last record (a write cut short by a crash, never acknowledged) is cut off.
//! - Snapshots are taken by a background thread after a number of records or a time;
//!   the segments and snapshots they cover are then deleted.

mod error;
mod experiments;
mod identity;
mod incoming;
mod log;
mod snapshot;
mod store;

pub use error::{LookupError, StoreError};
pub use experiments::{ExperimentStatus, ExperimentTable, MAX_EXPERIMENTS};
pub use identity::{IdentityLink, IdentityTable, read_identity_file};
pub use incoming::{
    EventRejection, IncomingEvent, IngestReport, MAX_CATEGORY_BYTES, MAX_CLOCK_SKEW_MS, MAX_EVENT_RECORD_BYTES,
    MAX_ID_BYTES, MAX_NAME_BYTES, Outcome,
};
pub use log::{Durability, MAX_RECORD_BYTES};
pub use store::{ProfileFeatures, ProfileStore, StoreOptions, StoreStats, now_ms};
