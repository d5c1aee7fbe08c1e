//! The seed's figures measured on a stream of events: order rate per room visit and mean
//! beauty watch time per platform, and the share of active users seen on two or more
//! platforms. Works on any event stream (simulated or real).

use liveprofile_events::{EventKind, Platform};
use std::collections::HashMap;

/// Running counts behind the calibration figures.
#[derive(Debug, Default, Clone)]
pub struct CalibrationStats {
    visits: [u64; 5],
    orders: [u64; 5],
    beauty_watch_s: [f64; 5],
    beauty_visits: [u64; 5],
    user_platforms: HashMap<String, u8>,
    events: u64,
}

/// The figures, per platform in [`Platform::ALL`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReport {
    /// Events seen.
    pub events: u64,
    /// Room visits (enter events) per platform.
    pub visits: [u64; 5],
    /// Orders per room visit per platform.
    pub order_rate: [f64; 5],
    /// Mean watch minutes of beauty visits per platform (from `leave` values).
    pub beauty_watch_min: [f64; 5],
    /// Users with at least one event.
    pub active_users: u64,
    /// Share of active users with events on two or more platforms.
    pub multi_platform_share: f64,
}

impl CalibrationStats {
    /// Counts one event.
    pub fn observe(&mut self, user_id: &str, platform: Platform, kind: EventKind, category: &str, value: f64) {
        let p = platform.index();
        self.events += 1;
        match kind {
            EventKind::Enter => self.visits[p] += 1,
            EventKind::Order => self.orders[p] += 1,
            EventKind::Leave if category == "beauty" => {
                self.beauty_watch_s[p] += value;
                self.beauty_visits[p] += 1;
            }
            _ => {}
        }
        match self.user_platforms.get_mut(user_id) {
            Some(mask) => *mask |= 1 << p,
            None => {
                self.user_platforms.insert(user_id.to_owned(), 1 << p);
            }
        }
    }

    /// The figures so far.
    pub fn report(&self) -> CalibrationReport {
        let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
        let active = self.user_platforms.len() as u64;
        let multi = self.user_platforms.values().filter(|m| m.count_ones() >= 2).count() as f64;
        CalibrationReport {
            events: self.events,
            visits: self.visits,
            order_rate: std::array::from_fn(|p| ratio(self.orders[p] as f64, self.visits[p])),
            beauty_watch_min: std::array::from_fn(|p| ratio(self.beauty_watch_s[p], self.beauty_visits[p]) / 60.0),
            active_users: active,
            multi_platform_share: ratio(multi, active),
        }
    }
}

impl std::fmt::Display for CalibrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "events: {}", self.events)?;
        writeln!(f, "platform          visits   order/visit   beauty watch (min)")?;
        for p in Platform::ALL {
            let i = p.index();
            writeln!(
                f,
                "{:<16}{:>8}   {:>10.2}%   {:>8.2}",
                p.as_str(),
                self.visits[i],
                100.0 * self.order_rate[i],
                self.beauty_watch_min[i]
            )?;
        }
        write!(f, "users active on 2+ platforms: {:.2}% of {}", 100.0 * self.multi_platform_share, self.active_users)
    }
}
