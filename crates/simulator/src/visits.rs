//! One user's days: Poisson visits per day, each placed on a platform, category, hour and
//! room, and filled with the events of a visit (enter, interactions, items, order, leave).

use crate::experiment::UserEffect;
use crate::users::{UserTraits, pick_index};
use crate::world::{Host, MEDIAN_PRICE, PRICE_SIGMA, PlatformProfile, World};
use liveprofile_events::{DAY_MS, EventKind, HOUR_MS};
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Poisson};
use rand_pcg::Pcg64Mcg;

/// Watch-time factor of visits that end in an order (buyers stay longer).
const BUYER_WATCH_FACTOR: f64 = 1.5;
/// Items in each category's catalogue.
const CATALOGUE_SIZE: u32 = 2_000;
/// Marker for "no item" / "no host".
pub(crate) const NONE_U32: u32 = u32::MAX;

/// A simulated event in compact form; ids are formatted when written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimEvent {
    /// UTC milliseconds.
    pub ts_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Platform index.
    pub platform: u8,
    /// Live category index.
    pub category: u8,
    /// Host index into `World::hosts`.
    pub host: u16,
    /// Day index of the room (the day its slot started).
    pub room_day: i32,
    /// Item number within the category catalogue, or `NONE_U32`.
    pub item: u32,
    /// Value column.
    pub value: f64,
    /// Coupon column.
    pub coupon: bool,
}

/// Probability that a visit of `user` to `host`'s room ends in an order.
pub fn order_probability(world: &World, user: &UserTraits, host: &Host) -> f64 {
    let p = host.platform.index();
    let c = host.category;
    (world.platforms[p].base_order_rate
        * user.conversion_factor
        * (0.5 + 3.0 * user.category_affinity[c])
        * host.conversion_factor)
        .min(0.95)
}

/// Probability that a visit of `user` to `host`'s room includes a gift.
pub fn gift_probability(user: &UserTraits, host: &Host) -> f64 {
    (user.gift_propensity * host.interaction_factor).min(1.0)
}

/// The rooms a visit on platform `p`, category `c` at China hour `h` goes to, with their
/// probabilities: the followed host with probability `loyalty` when live, else a live room
/// uniformly.
pub fn host_choice(world: &World, user: &UserTraits, p: usize, c: usize, h: u32) -> Vec<(u16, f64)> {
    let live = world.live_hosts(p, c, h);
    let followed_live = user.followed[p][c].filter(|f| live.contains(f));
    let loyal = if followed_live.is_some() { user.loyalty } else { 0.0 };
    let uniform = (1.0 - loyal) / live.len() as f64;
    live.iter().map(|&j| (j, uniform + if Some(j) == followed_live { loyal } else { 0.0 })).collect()
}

fn choose_host(rng: &mut Pcg64Mcg, world: &World, user: &UserTraits, p: usize, c: usize, h: u32) -> u16 {
    let live = world.live_hosts(p, c, h);
    if let Some(f) = user.followed[p][c].filter(|f| live.contains(f))
        && rng.random::<f64>() < user.loyalty
    {
        return f;
    }
    live[rng.random_range(0..live.len())]
}

fn item_price(c: usize, item: u32) -> f64 {
    // A fixed catalogue price per item: a log-normal quantile from a hash of the item.
    let mut x = (c as u64) << 32 | u64::from(item);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let u1 = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((x.rotate_left(17) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    round_cents(MEDIAN_PRICE[c] * (PRICE_SIGMA * z).exp())
}

fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Appends the events of `days` simulated days of one user to `out`, sorted by time.
pub fn simulate_user(
    rng: &mut Pcg64Mcg,
    world: &World,
    user: &UserTraits,
    start_ms: i64,
    days: u32,
    out: &mut Vec<SimEvent>,
) {
    simulate_user_in(rng, world, user, start_ms, days, None, out);
}

/// [`simulate_user`] for a user in a planted experiment: `effect` changes the user's visits
/// that the experiment covers (without it, or with factors of 1, the events are those of
/// [`simulate_user`] exactly).
pub fn simulate_user_in(
    rng: &mut Pcg64Mcg,
    world: &World,
    user: &UserTraits,
    start_ms: i64,
    days: u32,
    effect: Option<&UserEffect<'_>>,
    out: &mut Vec<SimEvent>,
) {
    let first = out.len();
    let visits = Poisson::new(user.visits_per_day).expect("positive rate");
    for day in 0..days as i32 {
        let n = visits.sample(rng) as u32;
        for _ in 0..n {
            let p = pick_index(rng, &user.platform_weights);
            let c = pick_index(rng, &user.category_affinity);
            let h = pick_index(rng, &user.hour_weights) as u32;
            let t0 = start_ms + i64::from(day) * DAY_MS + i64::from(h) * HOUR_MS + rng.random_range(0..HOUR_MS);
            let host_idx = choose_host(rng, world, user, p, c, h);
            let room_day = if h < world.hosts[host_idx as usize].slot_start_hour { day - 1 } else { day };
            simulate_visit(rng, world, user, VisitPlace { p, c, host_idx, room_day, t0 }, effect, out);
        }
    }
    out[first..].sort_by_key(|e| e.ts_ms);
}

struct VisitPlace {
    p: usize,
    c: usize,
    host_idx: u16,
    room_day: i32,
    t0: i64,
}

fn simulate_visit(
    rng: &mut Pcg64Mcg,
    world: &World,
    user: &UserTraits,
    at: VisitPlace,
    effect: Option<&UserEffect<'_>>,
    out: &mut Vec<SimEvent>,
) {
    let host = &world.hosts[at.host_idx as usize];
    let profile = &world.platforms[at.p];
    let mut p_order = order_probability(world, user, host);
    if let Some(effect) = effect {
        p_order = effect.order_probability(at.p, at.c, at.t0, p_order);
    }
    let ordered = rng.random::<f64>() < p_order;
    let watch_s = watch_seconds(rng, profile, user, host, at.c, ordered);
    let watch_ms = (watch_s * 1000.0).round() as i64;
    let base = SimEvent {
        ts_ms: at.t0,
        kind: EventKind::Enter,
        platform: at.p as u8,
        category: at.c as u8,
        host: at.host_idx,
        room_day: at.room_day,
        item: NONE_U32,
        value: 0.0,
        coupon: false,
    };
    out.push(base);
    let visit = Visit { base, profile, start: at.t0, end: at.t0 + watch_ms, minutes: watch_s / 60.0 };
    visit.interactions(rng, user, host, &at, out);
    if ordered {
        visit.views_then_order(rng, user, at.c, out);
    } else {
        visit.views(rng, at.c, out);
    }
    out.push(SimEvent { ts_ms: visit.end, kind: EventKind::Leave, value: watch_ms as f64 / 1000.0, ..base });
}

/// Seconds watched: the platform's mean for the category, scaled by the user, the host, a
/// log-normal draw and (for a buyer) the buyer factor, between 5 s and 4 h.
fn watch_seconds(
    rng: &mut Pcg64Mcg,
    profile: &PlatformProfile,
    user: &UserTraits,
    host: &Host,
    c: usize,
    ordered: bool,
) -> f64 {
    let noise = LogNormal::new(-0.32, 0.8).expect("valid").sample(rng);
    let buyer = if ordered { BUYER_WATCH_FACTOR } else { 1.0 };
    (profile.watch_mean_s[c] * user.watch_factor * host.watch_factor * noise * buyer).clamp(5.0, 4.0 * 3600.0)
}

/// A time strictly after `from` and before `to` (or `from + 1` when there is no room).
fn within(rng: &mut Pcg64Mcg, from: i64, to: i64) -> i64 {
    rng.random_range(from + 1..to.max(from + 2))
}

/// One room visit being simulated: its enter event (the template of the others), its
/// platform, and when it starts and ends.
struct Visit<'a> {
    base: SimEvent,
    profile: &'a PlatformProfile,
    start: i64,
    end: i64,
    minutes: f64,
}

impl Visit<'_> {
    /// Likes and comments (Poisson per minute, scaled by sociability and the host), a
    /// share, a follow of a host not yet followed, a gift.
    fn interactions(
        &self,
        rng: &mut Pcg64Mcg,
        user: &UserTraits,
        host: &Host,
        at: &VisitPlace,
        out: &mut Vec<SimEvent>,
    ) {
        let (base, t0, end) = (self.base, self.start, self.end);
        let social = user.sociability * host.interaction_factor;
        for (kind, per_minute) in [(EventKind::Like, 0.8), (EventKind::Comment, 0.12)] {
            let n = Poisson::new(per_minute * self.minutes * social + 1e-9).expect("positive").sample(rng) as u32;
            for _ in 0..n {
                out.push(SimEvent { ts_ms: within(rng, t0, end), kind, ..base });
            }
        }
        if rng.random::<f64>() < 0.02 * host.interaction_factor {
            out.push(SimEvent { ts_ms: within(rng, t0, end), kind: EventKind::Share, ..base });
        }
        if user.followed[at.p][at.c] != Some(at.host_idx) && rng.random::<f64>() < 0.03 * host.interaction_factor {
            out.push(SimEvent { ts_ms: within(rng, t0, end), kind: EventKind::Follow, ..base });
        }
        if rng.random::<f64>() < gift_probability(user, host) {
            let amount = LogNormal::new(10f64.ln(), 1.0).expect("valid").sample(rng);
            out.push(SimEvent {
                ts_ms: within(rng, t0, end),
                kind: EventKind::Gift,
                value: round_cents(amount.max(0.1)),
                ..base
            });
        }
    }

    /// An item viewed at `ts` (offered with a coupon at the platform's rate).
    fn view(&self, rng: &mut Pcg64Mcg, ts: i64, item: u32, price: f64) -> SimEvent {
        SimEvent {
            ts_ms: ts,
            kind: EventKind::ViewItem,
            item,
            value: price,
            coupon: rng.random::<f64>() < self.profile.coupon_offer_rate,
            ..self.base
        }
    }

    /// A buyer looks at a few items, the last of which they order (impulsive users early),
    /// usually through the cart.
    fn views_then_order(&self, rng: &mut Pcg64Mcg, user: &UserTraits, c: usize, out: &mut Vec<SimEvent>) {
        let (base, t0) = (self.base, self.start);
        let watch_ms = self.end - t0;
        let frac = 0.15 + 0.8 * rng.random::<f64>().powf(1.0 + 2.0 * user.impulsiveness);
        let t_order = t0 + 2 + ((watch_ms - 4) as f64 * frac) as i64;
        let n_views = 1 + Poisson::new(1.2).expect("valid").sample(rng) as u32;
        let mut last_view = t0 + 1;
        for _ in 1..n_views {
            let item = rng.random_range(0..CATALOGUE_SIZE);
            let ts = within(rng, t0, t_order - 1);
            last_view = last_view.max(ts);
            out.push(self.view(rng, ts, item, item_price(c, item)));
        }
        let item = rng.random_range(0..CATALOGUE_SIZE);
        let price =
            round_cents(LogNormal::new(user.order_price_mu(c), PRICE_SIGMA).expect("valid").sample(rng).max(1.0));
        let ts_view = within(rng, last_view.min(t_order - 2), t_order - 1);
        out.push(self.view(rng, ts_view, item, price));
        if rng.random::<f64>() < 0.7 {
            let ts_cart = within(rng, ts_view, t_order);
            out.push(SimEvent {
                ts_ms: ts_cart.min(t_order - 1).max(ts_view),
                kind: EventKind::AddToCart,
                item,
                value: price,
                ..base
            });
        }
        out.push(SimEvent {
            ts_ms: t_order,
            kind: EventKind::Order,
            item,
            value: price,
            coupon: rng.random::<f64>() < user.coupon_rate(),
            ..base
        });
    }

    /// A visitor who does not buy views a few items (more the longer they stay), some into
    /// the cart or the favourites.
    fn views(&self, rng: &mut Pcg64Mcg, c: usize, out: &mut Vec<SimEvent>) {
        let (base, t0, end) = (self.base, self.start, self.end);
        let n_views = Poisson::new(0.15 + 0.25 * self.minutes).expect("valid").sample(rng) as u32;
        for _ in 0..n_views {
            let item = rng.random_range(0..CATALOGUE_SIZE);
            let price = item_price(c, item);
            let ts = within(rng, t0, end);
            out.push(self.view(rng, ts, item, price));
            let r = rng.random::<f64>();
            if r < 0.08 {
                out.push(SimEvent {
                    ts_ms: within(rng, ts, end),
                    kind: EventKind::AddToCart,
                    item,
                    value: price,
                    ..base
                });
            } else if r < 0.16 {
                out.push(SimEvent { ts_ms: within(rng, ts, end), kind: EventKind::Favorite, item, ..base });
            }
        }
    }
}
