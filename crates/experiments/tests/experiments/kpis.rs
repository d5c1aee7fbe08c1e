//! The KPI report on a small hand-written event file: exact values per cell, China-day
//! boundaries, refused rows, the published files.

use liveprofile_events::{DAY_MS, Event, EventKind, EventWriter, HOUR_MS, Platform};
use liveprofile_experiments::Metric;
use liveprofile_experiments::kpis::{KpiAccumulator, KpiReport, china_day, day_label, kpis_from_file, write_kpis};

/// 2026-11-02 00:00 China time, in UTC ms.
const D0: i64 = 1_793_548_800_000;

fn ev(n: usize, ts_ms: i64, platform: Platform, user: &str, category: &str, kind: EventKind, value: f64) -> Event {
    Event {
        event_id: format!("e{n}"),
        ts_ms,
        platform,
        user_id: user.to_owned(),
        platform_user_id: format!("{}-{user}", platform.as_str()),
        room_id: Some(format!("room-{}-{category}", platform.as_str())),
        host_id: None,
        category: category.to_owned(),
        kind,
        item_id: None,
        value,
        coupon: false,
    }
}

/// Three users over three China days; the last two rows break the contract.
fn events() -> Vec<Event> {
    use EventKind::*;
    use Platform::{Douyin as DY, Taobao as TB};
    let h = |day: i64, hour: i64| D0 + day * DAY_MS + hour * HOUR_MS;
    let rows = [
        (h(0, 10), TB, "u1", "apparel", Enter, 0.0),
        (h(0, 10) + 1, TB, "u2", "apparel", Enter, 0.0),
        (h(0, 10) + 2, TB, "u1", "apparel", Like, 0.0),
        (h(0, 10) + 3, TB, "u1", "apparel", Order, 100.0),
        (h(0, 10) + 4, TB, "u1", "apparel", Order, 50.5),
        (h(0, 10) + 5, TB, "u1", "apparel", Leave, 120.0),
        (h(0, 11), TB, "u2", "apparel", Leave, 240.0),
        (h(0, 12), DY, "u1", "apparel", Enter, 0.0),
        (h(0, 12) + 1, DY, "u1", "apparel", Leave, 60.0),
        (h(1, 9), TB, "u1", "beauty", Enter, 0.0),
        (h(1, 9) + 1, DY, "u3", "beauty", Enter, 0.0),
        (h(1, 9) + 2, TB, "u1", "beauty", Comment, 0.0),
        (h(1, 9) + 3, DY, "u3", "beauty", Gift, 5.0),
        (h(1, 9) + 4, DY, "u3", "beauty", Share, 0.0),
        (h(1, 9) + 5, TB, "u1", "beauty", Leave, 30.0),
        (h(1, 10), DY, "u3", "beauty", Leave, 600.0),
        // The last millisecond of China day 1 (15:59:59.999 UTC) and the first of day 2.
        (h(2, 0) - 1, TB, "u2", "apparel", Enter, 0.0),
        (h(2, 0), TB, "u2", "apparel", Order, 20.0),
        (h(2, 0) + 1, TB, "u2", "apparel", Leave, 10.0),
        // Refused: a like with a value, a negative order.
        (h(1, 12), TB, "u3", "apparel", Like, 1.0),
        (h(1, 12), TB, "u3", "apparel", Order, -3.0),
    ];
    rows.iter().enumerate().map(|(n, &(ts, p, u, c, k, v))| ev(n, ts, p, u, c, k, v)).collect()
}

fn report() -> (KpiReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    let mut w = EventWriter::create(&path).unwrap();
    for e in events() {
        w.append(&e).unwrap();
    }
    w.finish().unwrap();
    (kpis_from_file(&path).unwrap(), dir)
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
        (None, None) => true,
        _ => false,
    }
}

/// Checks every metric of a cell: [opv, gmv/user, orders/user, watch min/visit,
/// interactions/visit, repurchase, cross-platform].
fn check(r: &KpiReport, at: (Option<Platform>, Option<&str>, Option<&str>), users: u64, want: [Option<f64>; 7]) {
    let cell = r.cell(at.0, at.1, at.2).unwrap_or_else(|| panic!("no cell {at:?}"));
    assert_eq!(cell.users, users, "{at:?}");
    for (m, w) in Metric::ALL.into_iter().zip(want) {
        assert!(close(cell.value(m), w), "{at:?} {m}: {:?}, expected {w:?}", cell.value(m));
    }
}

#[test]
fn china_days_start_at_midnight_utc_plus_8() {
    assert_eq!(china_day(D0), china_day(D0 + DAY_MS - 1));
    assert_eq!(china_day(D0) + 1, china_day(D0 + DAY_MS));
    assert_eq!(day_label(china_day(D0)), "2026-11-02");
    assert_eq!(day_label(china_day(D0 - 1)), "2026-11-01");
}

#[test]
fn every_cell_has_the_hand_computed_values() {
    let (r, _dir) = report();
    let (tb, dy) = (Some(Platform::Taobao), Some(Platform::Douyin));
    let (d0, d1, d2) = (Some("2026-11-02"), Some("2026-11-03"), Some("2026-11-04"));
    assert_eq!(r.events, 19);
    assert_eq!(r.rejected_rows, 2);
    assert_eq!(r.rejected.iter().map(|x| x.row).collect::<Vec<_>>(), [19, 20]);
    assert_eq!(r.users, 3);
    assert_eq!(r.days, ["2026-11-02", "2026-11-03", "2026-11-04"]);

    // u1: 3 visits, 2 orders (150.5 yuan), 210 s, 2 interactions, taobao + douyin;
    // u2: 2 visits, 1 order (20), 250 s; u3: 1 visit, 600 s, 2 interactions.
    let all = [
        Some(3.0 / 6.0),
        Some(170.5 / 3.0),
        Some(1.0),
        Some(1060.0 / 60.0 / 6.0),
        Some(4.0 / 6.0),
        Some(1.0 / 3.0),
        Some(1.0 / 3.0),
    ];
    check(&r, (None, None, None), 3, all);
    assert_eq!((r.total.visits, r.total.orders, r.total.events, r.total.interactions), (6, 3, 19, 4));
    assert!((r.total.gmv - 170.5).abs() < 1e-9);

    // Taobao apparel, day 0: u1 (1 visit, 2 orders, 120 s, a like) and u2 (1 visit, 240 s).
    check(&r, (tb, Some("apparel"), d0), 2, [Some(1.0), Some(75.25), Some(1.0), Some(3.0), Some(0.5), Some(0.5), None]);
    // Day 1: u2's entry in the last millisecond of the day.
    check(&r, (tb, Some("apparel"), d1), 1, [Some(0.0), Some(0.0), Some(0.0), Some(0.0), Some(0.0), Some(0.0), None]);
    // Day 2: an order and a leave, no entry: the per-visit metrics have no value.
    check(&r, (tb, Some("apparel"), d2), 1, [None, Some(20.0), Some(1.0), None, None, Some(0.0), None]);
    // Taobao apparel, all days: u1 (1 visit, 2 orders) and u2 (2 visits, 1 order, 250 s).
    check(
        &r,
        (tb, Some("apparel"), None),
        2,
        [Some(1.0), Some(85.25), Some(1.5), Some(370.0 / 60.0 / 3.0), Some(1.0 / 3.0), Some(0.5), None],
    );
    // Douyin: u1 (apparel, 60 s) and u3 (beauty, 600 s, a gift and a share; gifts are not GMV).
    check(&r, (dy, None, None), 2, [Some(0.0), Some(0.0), Some(0.0), Some(5.5), Some(1.0), Some(0.0), None]);
    // Apparel over platforms: u1 on taobao and douyin is cross-platform, u2 is not.
    check(
        &r,
        (None, Some("apparel"), None),
        2,
        [Some(0.75), Some(85.25), Some(1.5), Some(430.0 / 60.0 / 4.0), Some(0.25), Some(0.5), Some(0.5)],
    );
    // Day 1 over platforms and categories: u1 (taobao beauty), u2 (taobao apparel), u3.
    check(&r, (None, None, d1), 3, [Some(0.0), Some(0.0), Some(0.0), Some(3.5), Some(1.0), Some(0.0), Some(0.0)]);
    // Beauty on day 1, over platforms: u1 and u3, each on one platform.
    check(
        &r,
        (None, Some("beauty"), d1),
        2,
        [Some(0.0), Some(0.0), Some(0.0), Some(5.25), Some(1.5), Some(0.0), Some(0.0)],
    );
    // Taobao per day: day 0 holds u1 and u2 (u1's douyin visit is not taobao's).
    check(&r, (tb, None, d0), 2, [Some(1.0), Some(75.25), Some(1.0), Some(3.0), Some(0.5), Some(0.5), None]);

    // Every level is complete: the platform-category-day cells add up to the total.
    let visits: u64 = r.by_platform_category_day.iter().map(|c| c.visits).sum();
    let events: u64 = r.by_platform_category_day.iter().map(|c| c.events).sum();
    assert_eq!((visits, events), (6, 19));
    assert_eq!(r.by_platform.len(), 2);
    assert_eq!(r.by_category.len(), 2);
    assert_eq!(r.by_platform_day.len(), 5);
}

#[test]
fn the_order_of_events_does_not_change_the_figures() {
    let (r, _dir) = report();
    let mut acc = KpiAccumulator::new();
    for e in events().iter().rev().filter(|e| e.validate().is_ok()) {
        acc.observe(&e.parts());
    }
    let reversed = acc.finish(None);
    assert_eq!(reversed.events, r.events);
    let cells = |r: &KpiReport| {
        let mut all = vec![r.total.clone()];
        for list in [&r.by_platform, &r.by_category, &r.by_day, &r.by_platform_category, &r.by_platform_day] {
            all.extend(list.iter().cloned());
        }
        all.extend(r.by_category_day.iter().cloned());
        all.extend(r.by_platform_category_day.iter().cloned());
        all
    };
    let (a, b) = (cells(&r), cells(&reversed));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.platform, &x.category, &x.day, x.users, x.visits, x.orders),
            (&y.platform, &y.category, &y.day, y.users, y.visits, y.orders)
        );
        for m in Metric::ALL {
            assert!(close(x.value(m), y.value(m)), "{m} {x:?} {y:?}");
        }
    }
}

#[test]
fn the_report_is_published_as_json_and_self_contained_html() {
    let (r, dir) = report();
    let out = dir.path().join("kpis");
    let files = write_kpis(&r, &out).unwrap();
    let back: KpiReport = serde_json::from_slice(&std::fs::read(&files.json).unwrap()).unwrap();
    assert_eq!((back.users, back.events, back.rejected_rows), (3, 19, 2));
    assert_eq!(back.by_platform_category_day.len(), r.by_platform_category_day.len());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&files.json).unwrap()).unwrap();
    assert_eq!(json["total"]["metrics"]["orders_per_visit"], 0.5);
    assert_eq!(json["by_platform"][0]["platform"], "taobao");
    assert!(json["by_platform"][0]["metrics"]["cross_platform_rate"].is_null());
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), 3, "one chart per daily metric");
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "no outside resources");
    assert!(html.contains("taobao") && html.contains("Orders per visit") && html.contains("2 rows refused"));
    // Nothing else is left in the folder (no temporary files).
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["kpis.html", "kpis.json"]);
}
