//! Traffic policy of a model: a stable version, an optional canary on a share of users
//! chosen by a stable hash of the user id (one user always sees the same arm), and an
//! optional shadow scored off the request path.

use serde::{Deserialize, Serialize};

/// Which arm produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The stable version.
    Stable,
    /// The canary version.
    Canary,
}

impl Arm {
    /// Lower-case name, as used in metrics and answers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Canary => "canary",
        }
    }
}

/// A canary: a version and the share of users routed to it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// Version.
    pub version: u32,
    /// Percent of users, 0-100.
    pub percent: f64,
}

/// The requested traffic policy of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrafficPolicy {
    /// Stable version.
    pub stable: u32,
    /// Optional canary.
    pub canary: Option<Canary>,
    /// Optional shadow version.
    pub shadow: Option<u32>,
}

/// Buckets of the user hash: canary percent has a resolution of 0.01%.
pub const BUCKETS: u64 = 10_000;

/// Stable bucket (0..[`BUCKETS`]) of a user id: FNV-1a 64, the same in every process and
/// release, so a user sees one arm for the whole session and across restarts.
pub fn user_bucket(user_id: &str) -> u64 {
    liveprofile_events::stable_hash(user_id) % BUCKETS
}

/// Whether a user falls in a canary of `percent`.
pub fn in_canary(user_id: &str, percent: f64) -> bool {
    (user_bucket(user_id) as f64) < percent * (BUCKETS as f64) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_is_fixed_fnv1a() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(user_bucket("a"), 0xaf63_dc4c_8601_ec8c % BUCKETS);
        assert_eq!(user_bucket(""), 0xcbf2_9ce4_8422_2325 % BUCKETS);
    }

    #[test]
    fn canary_share_is_close_to_the_percent() {
        let n = 100_000;
        let hits = (0..n).filter(|i| in_canary(&format!("u{i:08}"), 10.0)).count();
        let share = hits as f64 / n as f64;
        assert!((share - 0.10).abs() < 0.005, "{share}");
        assert!((0..1000).all(|i| !in_canary(&format!("u{i}"), 0.0)));
        assert!((0..1000).all(|i| in_canary(&format!("u{i}"), 100.0)));
    }
}
