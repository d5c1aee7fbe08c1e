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
pub use kinds::{EventKind, Platform};
pub use parquet_io::{COLUMNS, DecodedBatch, EventParts, EventReader, EventWriter, RejectedRow, event_schema};
pub use time::{CHINA_OFFSET_MS, DAY_MS, HOUR_MS, MINUTE_MS, china_hour_of_day};

/// Live-room categories the simulator schedules rooms in. Events may carry other
/// category strings (the Taobao import uses numeric category ids).
pub const LIVE_CATEGORIES: [&str; 6] = ["apparel", "beauty", "home", "food", "electronics", "maternal_baby"];

/// One live-commerce event, owned.
#[derive(Debug, Clone, PartialEq)]
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
    /// and `add_to_cart`, else 0.
    pub value: f64,
    /// Whether a coupon was used or offered.
    pub coupon: bool,
}

impl Event {
    /// Checks the rules a single event must satisfy on its own: a non-empty event and
    /// user id, a finite non-negative value, a value only where the kind carries one,
    /// and a room on room events.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.event_id.is_empty() {
            return Err(EventError::Missing { column: "event_id" });
        }
        if self.user_id.is_empty() {
            return Err(EventError::Missing { column: "user_id" });
        }
        if !self.value.is_finite() {
            return Err(EventError::BadValue { value: self.value, reason: "not finite" });
        }
        if self.value < 0.0 {
            return Err(EventError::BadValue { value: self.value, reason: "negative" });
        }
        if !self.kind.carries_value() && self.value != 0.0 {
            return Err(EventError::BadValue { value: self.value, reason: "this kind of event carries no value" });
        }
        if self.kind.needs_room() && self.room_id.is_none() {
            return Err(EventError::Missing { column: "room_id" });
        }
        Ok(())
    }
}
