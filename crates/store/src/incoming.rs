//! Events as ingest receives them (strings not yet checked against the contract), their
//! checking into [`Event`]s, and the per-event outcome.

use crate::identity::IdentityTable;
use liveprofile_events::{Event, EventKind, Platform};
use serde::{Deserialize, Serialize};

/// How far ahead of the server's clock an event or a query time may be, milliseconds.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// Longest id, in bytes: `event_id`, `user_id`, `platform_user_id`, `room_id`, `host_id`
/// and `item_id`.
pub const MAX_ID_BYTES: usize = 256;
/// Longest `category`, in bytes.
pub const MAX_CATEGORY_BYTES: usize = 128;
/// Longest `platform` or `kind`, in bytes (the contract's longest name has 15).
pub const MAX_NAME_BYTES: usize = 32;

/// Upper bound of an accepted event's log record, in bytes: the six ids and the category
/// at their limits with their length prefixes, plus the fixed-size fields and tags (the
/// platform and kind are logged as numbers). Far below the log's record limit, so that an
/// event that passes [`IncomingEvent::to_event`] can always be written and read back.
pub const MAX_EVENT_RECORD_BYTES: usize = 6 * (MAX_ID_BYTES + 3) + (MAX_CATEGORY_BYTES + 3) + 64;

const _: () = assert!(MAX_EVENT_RECORD_BYTES <= crate::log::MAX_RECORD_BYTES);

/// One event as a producer sends it, over gRPC or as MQTT JSON (the JSON field names are
/// these). Empty strings mean "absent".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    /// Unique id of the event; ingest is idempotent by it.
    pub event_id: String,
    /// UTC milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Platform contract string (`taobao`, `douyin`, ...).
    #[serde(default)]
    pub platform: String,
    /// Unified user id; may be empty when `platform_user_id` is linked in the identity
    /// table.
    #[serde(default)]
    pub user_id: String,
    /// The platform's own account id.
    #[serde(default)]
    pub platform_user_id: String,
    /// Live room.
    #[serde(default)]
    pub room_id: String,
    /// Host of the room.
    #[serde(default)]
    pub host_id: String,
    /// Category of the room or item.
    #[serde(default)]
    pub category: String,
    /// Event kind contract string (`enter`, `order`, ...).
    pub kind: String,
    /// Item involved.
    #[serde(default)]
    pub item_id: String,
    /// Watch seconds, yuan or price, by kind (see the event contract), at most the kind's
    /// limit ([`EventKind::max_value`]: 10,000,000 yuan, 604,800 watch seconds).
    #[serde(default)]
    pub value: f64,
    /// Whether a coupon was used or offered.
    #[serde(default)]
    pub coupon: bool,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Taken in and logged.
    Accepted,
    /// An event with this id was already taken in for this user (not applied again).
    Duplicate,
    /// Older than the user's newest event by more than the late window.
    Late(String),
    /// Breaks the event contract or cannot be attributed to a user.
    Rejected(String),
}

/// A refused event: its position in the batch, its id and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRejection {
    /// Index of the event in the batch.
    pub index: usize,
    /// The event's id (may be empty: that is one of the reasons).
    pub event_id: String,
    /// Whether it was refused for being late (else it is invalid).
    pub late: bool,
    /// Why.
    pub reason: String,
}

/// The result of one ingest call. Every event is counted exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Events received.
    pub received: u64,
    /// Events taken in and durable in the log.
    pub accepted: u64,
    /// Events already taken in earlier (idempotent replays).
    pub duplicates: u64,
    /// Events refused as too late.
    pub late: u64,
    /// Events refused as invalid.
    pub rejected: u64,
    /// One entry per late or invalid event.
    pub errors: Vec<EventRejection>,
    /// Sequence number of the last log record written by this call (0 if none).
    pub last_seq: u64,
}

impl IngestReport {
    /// Counts a refused event (late or invalid) and records why. The id is echoed cut to
    /// [`MAX_ID_BYTES`]: a longer one is itself the reason, and a reply must not grow with
    /// what a client sent.
    pub fn refuse(&mut self, index: usize, event_id: &str, late: bool, reason: String) {
        if late {
            self.late += 1;
        } else {
            self.rejected += 1;
        }
        self.errors.push(EventRejection { index, event_id: prefix(event_id, MAX_ID_BYTES).to_owned(), late, reason });
    }

    /// Adds another report's counts (for a stream of batches).
    pub fn merge(&mut self, other: IngestReport, index_offset: usize) {
        self.received += other.received;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.rejected += other.rejected;
        self.errors.extend(other.errors.into_iter().map(|mut e| {
            e.index += index_offset;
            e
        }));
        self.last_seq = self.last_seq.max(other.last_seq);
    }
}

fn opt(s: &str) -> Option<String> {
    if s.is_empty() { None } else { Some(s.to_owned()) }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl IncomingEvent {
    /// Every text field with its name and size limit, in the order they are checked.
    fn text_fields(&self) -> [(&'static str, &str, usize); 9] {
        [
            ("event_id", &self.event_id, MAX_ID_BYTES),
            ("platform", &self.platform, MAX_NAME_BYTES),
            ("kind", &self.kind, MAX_NAME_BYTES),
            ("user_id", &self.user_id, MAX_ID_BYTES),
            ("platform_user_id", &self.platform_user_id, MAX_ID_BYTES),
            ("room_id", &self.room_id, MAX_ID_BYTES),
            ("host_id", &self.host_id, MAX_ID_BYTES),
            ("category", &self.category, MAX_CATEGORY_BYTES),
            ("item_id", &self.item_id, MAX_ID_BYTES),
        ]
    }

    /// Checks the size of every text field against its limit ([`MAX_ID_BYTES`],
    /// [`MAX_CATEGORY_BYTES`], [`MAX_NAME_BYTES`]); the reason names the first field over
    /// its limit, never echoing its value.
    pub fn check_sizes(&self) -> Result<(), String> {
        for (name, value, limit) in self.text_fields() {
            if value.len() > limit {
                return Err(format!("{name} is {} bytes, over the limit of {limit} bytes", value.len()));
            }
        }
        Ok(())
    }

    /// Checks the event against the contract and finds its unified user. Field sizes are
    /// checked first (see [`IncomingEvent::check_sizes`]), so that an accepted event's
    /// log record stays within [`MAX_EVENT_RECORD_BYTES`] and no reason quotes an
    /// oversized value. An event stamped more than [`MAX_CLOCK_SKEW_MS`] after `now_ms` is
    /// refused: taken in, it would move its user's clock ahead and every real event after
    /// it would be late. A value over its kind's limit ([`EventKind::max_value`]) is
    /// refused naming the field, the kind and the limit (`value 5e16 on order is over the
    /// limit of 10000000 yuan`): the contract's check, the same for event files.
    pub fn to_event(&self, identities: &IdentityTable, now_ms: i64) -> Result<Event, String> {
        self.check_sizes()?;
        if self.event_id.is_empty() {
            return Err("event_id is empty".to_owned());
        }
        if self.ts_ms <= 0 {
            return Err(format!("ts_ms {} is not a time after 1970 in milliseconds", self.ts_ms));
        }
        if self.ts_ms > now_ms + MAX_CLOCK_SKEW_MS {
            return Err(format!(
                "ts_ms {} is {} ms ahead of the server clock (at most {MAX_CLOCK_SKEW_MS} ms; milliseconds expected)",
                self.ts_ms,
                self.ts_ms - now_ms
            ));
        }
        if self.platform.is_empty() {
            return Err("platform is empty".to_owned());
        }
        let platform = Platform::parse(&self.platform).map_err(|e| e.to_string())?;
        if self.kind.is_empty() {
            return Err("kind is empty".to_owned());
        }
        let kind = EventKind::parse(&self.kind).map_err(|e| e.to_string())?;
        let user_id = if !self.user_id.is_empty() {
            self.user_id.clone()
        } else if self.platform_user_id.is_empty() {
            return Err("user_id and platform_user_id are both empty".to_owned());
        } else {
            match identities.resolve(platform, &self.platform_user_id) {
                // Links seeded from a file are not sized: the event's record must be.
                Some(u) if u.len() > MAX_ID_BYTES => {
                    return Err(format!(
                        "user_id linked to {platform} account {:?} is {} bytes, over the limit of {MAX_ID_BYTES} bytes",
                        self.platform_user_id,
                        u.len()
                    ));
                }
                Some(u) => u.to_owned(),
                None => {
                    return Err(format!(
                        "user_id is empty and {platform} account {:?} is not in the identity table",
                        self.platform_user_id
                    ));
                }
            }
        };
        let event = Event {
            event_id: self.event_id.clone(),
            ts_ms: self.ts_ms,
            platform,
            user_id,
            platform_user_id: self.platform_user_id.clone(),
            room_id: opt(&self.room_id),
            host_id: opt(&self.host_id),
            category: self.category.clone(),
            kind,
            item_id: opt(&self.item_id),
            value: self.value,
            coupon: self.coupon,
        };
        event.validate().map_err(|e| e.to_string())?;
        Ok(event)
    }

    /// The incoming form of a contract event (for producers and tests).
    pub fn from_event(e: &Event) -> IncomingEvent {
        IncomingEvent {
            event_id: e.event_id.clone(),
            ts_ms: e.ts_ms,
            platform: e.platform.as_str().to_owned(),
            user_id: e.user_id.clone(),
            platform_user_id: e.platform_user_id.clone(),
            room_id: e.room_id.clone().unwrap_or_default(),
            host_id: e.host_id.clone().unwrap_or_default(),
            category: e.category.clone(),
            kind: e.kind.as_str().to_owned(),
            item_id: e.item_id.clone().unwrap_or_default(),
            value: e.value,
            coupon: e.coupon,
        }
    }
}
