//! The business KPIs, defined once over the event contract: what a user did in a period
//! ([`Sums`], built event by event with [`Sums::observe`]) and each metric's value from
//! those sums ([`Metric::value`]). Experiments (per exposed user, after and before the
//! first exposure) and the KPI report (per platform, category and day) use these
//! definitions and no other.

use liveprofile_events::{Event, EventKind, Platform};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Resolution of GMV sums in yuan.
pub const GMV_UNIT: f64 = 1e-4;

/// A non-negative event value in integer units (values are checked finite and
/// non-negative by the event contract; anything else counts 0).
fn to_units(value: f64, per_unit: f64) -> i64 {
    let x = (value * per_unit).round();
    if x.is_finite() && x > 0.0 { if x >= i64::MAX as f64 { i64::MAX } else { x as i64 } } else { 0 }
}

/// What one user did in one period, in one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sums {
    /// Room visits (`enter` events).
    pub visits: u64,
    /// Orders.
    pub orders: u64,
    /// Yuan of orders, in units of [`GMV_UNIT`] yuan (integers, so that sums do not depend
    /// on the order events arrive in; saturating).
    pub gmv_units: i64,
    /// Milliseconds watched (`leave` values, saturating).
    pub watch_ms: i64,
    /// Likes, comments, shares, follows and gifts.
    pub interactions: u64,
    /// Events of any kind.
    pub events: u64,
    /// Platforms with any event, one bit per [`Platform::index`].
    pub platforms: u8,
}

impl Sums {
    /// Takes in one event.
    pub fn observe(&mut self, e: &Event) {
        self.add(e.kind, e.platform, e.value);
    }

    /// Takes in one event by its parts.
    pub fn add(&mut self, kind: EventKind, platform: Platform, value: f64) {
        self.events += 1;
        self.platforms |= 1 << platform.index();
        match kind {
            EventKind::Enter => self.visits += 1,
            EventKind::Order => {
                self.orders += 1;
                self.gmv_units = self.gmv_units.saturating_add(to_units(value, 1.0 / GMV_UNIT));
            }
            EventKind::Leave => self.watch_ms = self.watch_ms.saturating_add(to_units(value, 1000.0)),
            k if k.is_interaction() => self.interactions += 1,
            _ => {}
        }
    }

    /// Adds another period's sums.
    pub fn merge(&mut self, o: &Sums) {
        self.visits += o.visits;
        self.orders += o.orders;
        self.gmv_units = self.gmv_units.saturating_add(o.gmv_units);
        self.watch_ms = self.watch_ms.saturating_add(o.watch_ms);
        self.interactions += o.interactions;
        self.events += o.events;
        self.platforms |= o.platforms;
    }

    /// Yuan ordered.
    pub fn gmv(&self) -> f64 {
        self.gmv_units as f64 * GMV_UNIT
    }

    /// Minutes watched.
    pub fn watch_minutes(&self) -> f64 {
        self.watch_ms as f64 / 60_000.0
    }

    /// Platforms with any event.
    pub fn platform_count(&self) -> u32 {
        self.platforms.count_ones()
    }
}

/// How a metric is averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Mean over users of a per-user value (Welch's test).
    PerUser,
    /// Sum of numerators over sum of denominators whose unit is not the user (visits): the
    /// delta method.
    Ratio,
}

/// A KPI of the planning document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Orders per room visit (conversion).
    OrdersPerVisit,
    /// Yuan ordered per user.
    GmvPerUser,
    /// Orders per user.
    OrdersPerUser,
    /// Minutes watched per room visit.
    WatchMinutesPerVisit,
    /// Interactions (likes, comments, shares, follows, gifts) per room visit.
    InteractionsPerVisit,
    /// Share of users with a second order in the period (repurchase).
    RepurchaseRate,
    /// Share of users active on two or more platforms in the period.
    CrossPlatformRate,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 7] = [
        Metric::OrdersPerVisit,
        Metric::GmvPerUser,
        Metric::OrdersPerUser,
        Metric::WatchMinutesPerVisit,
        Metric::InteractionsPerVisit,
        Metric::RepurchaseRate,
        Metric::CrossPlatformRate,
    ];

    /// The name used in definitions and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::OrdersPerVisit => "orders_per_visit",
            Metric::GmvPerUser => "gmv_per_user",
            Metric::OrdersPerUser => "orders_per_user",
            Metric::WatchMinutesPerVisit => "watch_minutes_per_visit",
            Metric::InteractionsPerVisit => "interactions_per_visit",
            Metric::RepurchaseRate => "repurchase_rate",
            Metric::CrossPlatformRate => "cross_platform_rate",
        }
    }

    /// Parses a name; `conversion` is another name of `orders_per_visit`.
    pub fn parse(s: &str) -> Result<Metric, String> {
        if s == "conversion" {
            return Ok(Metric::OrdersPerVisit);
        }
        Metric::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            format!("unknown metric {s:?}; metrics are {}", names.join(", "))
        })
    }

    /// Per-user mean or ratio of sums.
    pub const fn kind(self) -> MetricKind {
        match self {
            Metric::OrdersPerVisit | Metric::WatchMinutesPerVisit | Metric::InteractionsPerVisit => MetricKind::Ratio,
            _ => MetricKind::PerUser,
        }
    }

    /// Whether a higher value is better (every KPI here is).
    pub const fn higher_is_better(self) -> bool {
        true
    }

    /// A user's (numerator, denominator): the metric over users is the sum of numerators
    /// over the sum of denominators. The denominator is 1 for per-user metrics and the
    /// visits for per-visit ones.
    pub fn value(self, s: &Sums) -> (f64, f64) {
        match self {
            Metric::OrdersPerVisit => (s.orders as f64, s.visits as f64),
            Metric::GmvPerUser => (s.gmv(), 1.0),
            Metric::OrdersPerUser => (s.orders as f64, 1.0),
            Metric::WatchMinutesPerVisit => (s.watch_minutes(), s.visits as f64),
            Metric::InteractionsPerVisit => (s.interactions as f64, s.visits as f64),
            Metric::RepurchaseRate => (f64::from(u8::from(s.orders >= 2)), 1.0),
            Metric::CrossPlatformRate => (f64::from(u8::from(s.platform_count() >= 2)), 1.0),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_metrics() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()), Ok(m));
        }
        assert_eq!(Metric::parse("conversion"), Ok(Metric::OrdersPerVisit));
        let e = Metric::parse("revenue").unwrap_err();
        assert!(e.contains("\"revenue\"") && e.contains("gmv_per_user"), "{e}");
    }

    #[test]
    fn sums_count_each_kind_once() {
        let mut s = Sums::default();
        s.add(EventKind::Enter, Platform::Taobao, 0.0);
        s.add(EventKind::Like, Platform::Taobao, 0.0);
        s.add(EventKind::Gift, Platform::Douyin, 5.0);
        s.add(EventKind::Order, Platform::Douyin, 99.5);
        s.add(EventKind::Order, Platform::Douyin, 0.5);
        s.add(EventKind::Leave, Platform::Taobao, 90.0);
        assert_eq!(s.visits, 1);
        assert_eq!(s.orders, 2);
        assert_eq!(s.gmv(), 100.0);
        assert_eq!(s.interactions, 2);
        assert_eq!(s.events, 6);
        assert_eq!(s.platform_count(), 2);
        assert_eq!(Metric::OrdersPerVisit.value(&s), (2.0, 1.0));
        assert_eq!(Metric::WatchMinutesPerVisit.value(&s), (1.5, 1.0));
        assert_eq!(Metric::RepurchaseRate.value(&s), (1.0, 1.0));
        assert_eq!(Metric::CrossPlatformRate.value(&s), (1.0, 1.0));
    }
}
