//! Synthetic live events for the ingest benchmark and tests: every user goes through room
//! visits (enter, interactions, sometimes an order, leave) on one of three platforms, with
//! the times the caller gives.

use liveprofile_client::v1;
use liveprofile_store::IncomingEvent;

/// Kinds of one visit, in order (values are yuan, price or watch seconds).
const VISIT: [(&str, f64); 8] = [
    ("enter", 0.0),
    ("like", 0.0),
    ("comment", 0.0),
    ("view_item", 129.0),
    ("favorite", 0.0),
    ("add_to_cart", 129.0),
    ("order", 129.0),
    ("leave", 300.0),
];
const PLATFORMS: [&str; 3] = ["taobao", "douyin", "kuaishou"];

/// An endless, deterministic stream of contract-valid events over `users` users.
#[derive(Debug, Clone)]
pub struct SyntheticEvents {
    prefix: String,
    users: u64,
    next_user: u64,
    /// Per user: position in the visit and visits done.
    steps: Vec<(u8, u64)>,
    counter: u64,
}

impl SyntheticEvents {
    /// Events of users `user-0` .. `user-{users-1}`, ids `{prefix}-{n}`.
    pub fn new(prefix: &str, users: u64) -> Self {
        SyntheticEvents {
            prefix: prefix.to_owned(),
            users: users.max(1),
            next_user: 0,
            steps: vec![(0, 0); users.max(1) as usize],
            counter: 0,
        }
    }

    /// The user id of user `k`.
    pub fn user_id(k: u64) -> String {
        format!("user-{k}")
    }

    /// The next event (users take turns), at `ts_ms`.
    pub fn next_event(&mut self, ts_ms: i64) -> v1::LiveEvent {
        let k = self.next_user;
        self.next_user = (self.next_user + 1) % self.users;
        self.event_of(k, ts_ms)
    }

    /// The next event of user `k`, at `ts_ms`.
    pub fn event_of(&mut self, k: u64, ts_ms: i64) -> v1::LiveEvent {
        let (step, visit) = &mut self.steps[k as usize];
        let visit_no = *visit;
        // Two visits in three skip the order (and the cart).
        let (mut kind, mut value) = VISIT[*step as usize];
        if (kind == "order" || kind == "add_to_cart") && !(visit_no + k).is_multiple_of(3) {
            (kind, value) = ("like", 0.0);
        }
        *step = (*step + 1) % VISIT.len() as u8;
        if *step == 0 {
            *visit += 1;
        }
        self.counter += 1;
        let visit = visit_no;
        let room = (k + visit) % 50;
        v1::LiveEvent {
            event_id: format!("{}-{}", self.prefix, self.counter),
            ts_ms,
            platform: PLATFORMS[(k % 3) as usize].to_owned(),
            user_id: Self::user_id(k),
            platform_user_id: format!("acct-{k}"),
            room_id: format!("room-{room}"),
            host_id: format!("host-{}", room % 20),
            category: "beauty".to_owned(),
            kind: kind.to_owned(),
            item_id: if value > 0.0 && kind != "leave" { format!("item-{room}") } else { String::new() },
            value,
            coupon: false,
        }
    }
}

/// A generated event as the store takes it, for the in-process store phase (the server's
/// ingest makes the same from the message it receives).
pub fn incoming(e: v1::LiveEvent) -> IncomingEvent {
    let v1::LiveEvent {
        event_id,
        ts_ms,
        platform,
        user_id,
        platform_user_id,
        room_id,
        host_id,
        category,
        kind,
        item_id,
        value,
        coupon,
    } = e;
    IncomingEvent {
        event_id,
        ts_ms,
        platform,
        user_id,
        platform_user_id,
        room_id,
        host_id,
        category,
        kind,
        item_id,
        value,
        coupon,
    }
}
