//! The live-commerce event contract: platforms, event kinds, the event record and its
//! Parquet layout (one row per event, fixed column names and types).
//!
//! Every other part of liveprofile (simulator, importers, feature pipeline, ingest) reads
//! and writes events through this crate, so the contract lives in exactly one place.

mod error;
mod kinds;
mod parquet_io;
mod time;

pub use error::{EventError, EventIoError};
pub use kinds::{EventKind, MAX_WATCH_SECONDS, MAX_YUAN, Platform};
pub use parquet_io::{
    COLUMNS, DecodedBatch, EventParts, EventReader, EventWriter, RawBatch, RejectedRow, decode_with, event_schema,
};
pub use time::{CHINA_OFFSET_MS, DAY_MS, HOUR_MS, MINUTE_MS, china_hour_of_day};

/// A stable 64-bit hash of an id (FNV-1a): the same in every process and release, so it
/// can be stored (snapshots) and shared between replicas (canary arms, user shards).
pub fn stable_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Live-room categories the simulator schedules rooms in. Events may carry other
/// category strings (the Taobao import uses numeric category ids).
pub const LIVE_CATEGORIES: [&str; 6] = ["apparel", "beauty", "home", "food", "electronics", "maternal_baby"];

/// One live-commerce event, owned.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Unique id of the event.
    pub event_id: String,
    /// UTC milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Platform the event happened on.
    pub platform: Platform,
    /// Unified user id across platforms.
    pub user_id: String,
    /// The platform's own account id for the user.
    pub platform_user_id: String,
    /// Live room, when the event happened in one.
    pub room_id: Option<String>,
    /// Host of the live room, when known.
    pub host_id: Option<String>,
    /// Category of the room or item.
    pub category: String,
    /// What happened.
    pub kind: EventKind,
    /// Item involved, if any.
    pub item_id: Option<String>,
    /// Watch seconds on `leave`, yuan on `gift` and `order`, item price on `view_item`
    /// and `add_to_cart`, else 0; at most [`EventKind::max_value`].
    pub value: f64,
    /// Whether a coupon was used or offered.
    pub coupon: bool,
}

impl Event {
    /// Checks the rules a single event must satisfy on its own (see
    /// [`EventParts::validate`]).
    pub fn validate(&self) -> Result<(), EventError> {
        self.parts().validate()
    }

    /// The event as borrowed parts.
    pub fn parts(&self) -> EventParts<'_> {
        EventParts {
            event_id: &self.event_id,
            ts_ms: self.ts_ms,
            platform: self.platform,
            user_id: &self.user_id,
            platform_user_id: &self.platform_user_id,
            room_id: self.room_id.as_deref(),
            host_id: self.host_id.as_deref(),
            category: &self.category,
            kind: self.kind,
            item_id: self.item_id.as_deref(),
            value: self.value,
            coupon: self.coupon,
        }
    }
}
