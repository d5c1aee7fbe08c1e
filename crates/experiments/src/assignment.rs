//! Sticky assignment: a user's arm from the experiment's salt and the unified user id
//! alone, so it is the same on every platform, replica and restart, with nothing stored.
//!
//! The key `salt + "\u{1f}" + user_id` is hashed with FNV-1a 64 (the project's stable id
//! hash) and then mixed with the SplitMix64 finaliser: FNV alone leaves keys that differ
//! only in their last bytes close together, and experiments with different salts must
//! split users independently. The mixed hash modulo [`BUCKETS`] picks a bucket; arms own
//! consecutive bucket ranges in definition order, sized by their shares.

use crate::definition::{Experiment, SHARE_RESOLUTION};

/// Buckets of the assignment hash: shares have a resolution of 0.01%.
pub const BUCKETS: u64 = 10_000;

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bucket (0..[`BUCKETS`]) of a user in an experiment of this salt.
pub fn bucket(salt: &str, user_id: &str) -> u64 {
    // FNV-1a over the key's bytes as they come, without building the key.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0x1f]).chain(user_id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h) % BUCKETS
}

/// Index of the arm a user is assigned to.
pub fn assign(e: &Experiment, user_id: &str) -> usize {
    let b = bucket(&e.salt, user_id);
    let mut upper = 0u64;
    for (i, a) in e.arms.iter().enumerate() {
        upper += (a.share * SHARE_RESOLUTION).round() as u64;
        if b < upper {
            return i;
        }
    }
    // Shares sum to 100 (checked when parsed), so every bucket has an arm.
    e.arms.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveprofile_events::stable_hash;

    #[test]
    fn bucket_is_fixed_for_a_salt_and_user() {
        // The value is part of the contract: replicas and releases must agree on it.
        assert_eq!(bucket("s", "u1"), bucket("s", "u1"));
        let expected = mix(stable_hash("s\u{1f}u1")) % BUCKETS;
        assert_eq!(bucket("s", "u1"), expected);
        assert_ne!(bucket("s", "u1"), bucket("t", "u1"));
    }

    #[test]
    fn salts_split_users_independently() {
        // With two 50/50 experiments of different salts, each of the four combinations
        // holds about a quarter of the users.
        let n = 200_000;
        let mut cells = [0u32; 4];
        for i in 0..n {
            let u = format!("u{i:08}");
            let a = (bucket("first", &u) < 5_000) as usize;
            let b = (bucket("second", &u) < 5_000) as usize;
            cells[a * 2 + b] += 1;
        }
        for c in cells {
            let share = f64::from(c) / f64::from(n);
            assert!((share - 0.25).abs() < 0.005, "{cells:?}");
        }
    }
}
