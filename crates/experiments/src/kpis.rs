//! The KPI report: the planning document's KPIs ([`Metric`]) per platform, category and
//! China day (UTC+8), with the totals over every subset of those three (per platform, per
//! category, per platform and category, per day, ..., overall), from an event file.
//!
//! Each KPI has the one definition of [`metric`](crate::metric): every user active in a
//! cell gets [`Sums`] of their events in that cell, and the cell's value is the sum of
//! [`Metric::value`] numerators over the sum of denominators. For per-visit metrics that is
//! the pooled ratio (orders over visits of everyone in the cell); for per-user metrics the
//! mean over the users active in the cell. A cell without visits has no per-visit value
//! (`null`), and the cross-platform rate has no value in a cell of one platform.
//!
//! The file is read in batches ([`EventReader`]); memory grows with the number of
//! (cell, user) pairs, not with the events. Sums are integers, so the figures do not depend
//! on the order of the events in the file; rows that break the event contract are counted
//! and listed, never used.

use crate::metric::{Metric, MetricKind, Sums};
use liveprofile_events::{CHINA_OFFSET_MS, DAY_MS, EventIoError, EventParts, EventReader, Platform, decode_with};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod html;

/// Rejected rows listed in the report (all of them are counted).
pub const MAX_LISTED_REJECTS: usize = 100;
/// Categories shown in the HTML tables (the busiest; the JSON has all of them).
pub const MAX_HTML_CATEGORIES: usize = 40;

/// A failure of the KPI report.
#[derive(Debug, thiserror::Error)]
pub enum KpiError {
    /// The event file could not be read.
    #[error(transparent)]
    Events(#[from] EventIoError),
    /// Writing an output failed.
    #[error("{path}: {source}")]
    Io {
        /// File or folder.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The report could not be encoded.
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// The China calendar day (UTC+8) of a UTC millisecond time, as days since 1970-01-01.
pub fn china_day(ts_ms: i64) -> i64 {
    (ts_ms + CHINA_OFFSET_MS).div_euclid(DAY_MS)
}

/// A China day number as `YYYY-MM-DD`.
pub fn day_label(day: i64) -> String {
    day.checked_mul(DAY_MS)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| format!("day {day}"), |t| t.date_naive().to_string())
}

/// A line of the report: the KPIs of the users active in one cell. A field left `None`
/// means "every": `platform: None` is all platforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiCell {
    /// Platform (contract string), or all.
    pub platform: Option<String>,
    /// Category, or all.
    pub category: Option<String>,
    /// China day `YYYY-MM-DD`, or the whole file.
    pub day: Option<String>,
    /// Users with an event in the cell.
    pub users: u64,
    /// Events in the cell.
    pub events: u64,
    /// Room visits (`enter` events).
    pub visits: u64,
    /// Orders.
    pub orders: u64,
    /// Yuan ordered.
    pub gmv: f64,
    /// Minutes watched.
    pub watch_minutes: f64,
    /// Interactions.
    pub interactions: u64,
    /// Every metric's value; `None` where it has no value (no visits, or the cross-platform
    /// rate of a single platform).
    pub metrics: BTreeMap<Metric, Option<f64>>,
}

impl KpiCell {
    /// A metric's value.
    pub fn value(&self, m: Metric) -> Option<f64> {
        self.metrics.get(&m).copied().flatten()
    }
}

/// A row the reader refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiReject {
    /// Zero-based row number in the file.
    pub row: u64,
    /// Event id, when readable.
    pub event_id: Option<String>,
    /// What is wrong.
    pub error: String,
}

/// A metric as the report describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiMetric {
    /// The metric.
    pub metric: Metric,
    /// Pooled ratio over visits or mean over users.
    pub kind: MetricKind,
    /// Label for people.
    pub label: String,
}

/// The KPI report (`kpis.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KpiReport {
    /// Event file read, when the report came from one.
    pub events_path: Option<String>,
    /// Events counted (valid rows).
    pub events: u64,
    /// Rows refused by the event contract (not counted anywhere else).
    pub rejected_rows: u64,
    /// The first [`MAX_LISTED_REJECTS`] refused rows.
    pub rejected: Vec<KpiReject>,
    /// Users with any event.
    pub users: u64,
    /// China days with any event, in order (`YYYY-MM-DD`).
    pub days: Vec<String>,
    /// The metrics, in report order.
    pub metrics: Vec<KpiMetric>,
    /// Every event.
    pub total: KpiCell,
    /// Per platform.
    pub by_platform: Vec<KpiCell>,
    /// Per category.
    pub by_category: Vec<KpiCell>,
    /// Per day.
    pub by_day: Vec<KpiCell>,
    /// Per platform and category.
    pub by_platform_category: Vec<KpiCell>,
    /// Per platform and day.
    pub by_platform_day: Vec<KpiCell>,
    /// Per category and day.
    pub by_category_day: Vec<KpiCell>,
    /// Per platform, category and day.
    pub by_platform_category_day: Vec<KpiCell>,
}

/// A label for people.
pub fn metric_label(m: Metric) -> &'static str {
    match m {
        Metric::OrdersPerVisit => "Orders per visit",
        Metric::GmvPerUser => "GMV per user (yuan)",
        Metric::OrdersPerUser => "Orders per user",
        Metric::WatchMinutesPerVisit => "Watch minutes per visit",
        Metric::InteractionsPerVisit => "Interactions per visit",
        Metric::RepurchaseRate => "Repurchase rate",
        Metric::CrossPlatformRate => "Cross-platform rate",
    }
}

/// Which of platform, category and day a cell fixes: bit 0 platform, 1 category, 2 day.
type Level = u8;
const PLATFORM: Level = 1;
const CATEGORY: Level = 2;
const DAY: Level = 4;
/// Every level, finest first.
const LEVELS: [Level; 8] = [7, 3, 5, 6, 1, 2, 4, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CellKey {
    platform: Option<Platform>,
    category: Option<u32>,
    day: Option<i64>,
}

impl CellKey {
    fn level(&self) -> Level {
        let bit = |set: bool, level: Level| if set { level } else { 0 };
        bit(self.platform.is_some(), PLATFORM) | bit(self.category.is_some(), CATEGORY) | bit(self.day.is_some(), DAY)
    }
}

/// Builds the report event by event; see the module documentation.
#[derive(Debug, Default)]
pub struct KpiAccumulator {
    users: HashMap<String, u32>,
    categories: Vec<String>,
    category_index: HashMap<String, u32>,
    cells: Vec<CellKey>,
    cell_index: HashMap<CellKey, u32>,
    /// (cell << 32 | user) -> index into `pairs`.
    pair_index: HashMap<u64, u32>,
    /// Per (cell, user): the cell and the user's sums in it, in first-seen order.
    pairs: Vec<(u32, Sums)>,
    /// The pairs of the previous event's user and (platform, category, day).
    last: Option<LastPlace>,
    events: u64,
    rejected_rows: u64,
    rejected: Vec<KpiReject>,
}

#[derive(Debug)]
struct LastPlace {
    user: String,
    platform: Platform,
    category: String,
    day: i64,
    pairs: [u32; 8],
}

impl KpiAccumulator {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one valid event.
    pub fn observe(&mut self, e: &EventParts<'_>) {
        self.events += 1;
        let day = china_day(e.ts_ms);
        let same = self.last.as_ref().is_some_and(|l| {
            l.day == day && l.platform == e.platform && l.user == e.user_id && l.category == e.category
        });
        if !same {
            let pairs = self.place(e.user_id, e.platform, e.category, day);
            match &mut self.last {
                Some(l) => {
                    l.user.clear();
                    l.user.push_str(e.user_id);
                    l.category.clear();
                    l.category.push_str(e.category);
                    l.platform = e.platform;
                    l.day = day;
                    l.pairs = pairs;
                }
                None => {
                    self.last = Some(LastPlace {
                        user: e.user_id.to_owned(),
                        platform: e.platform,
                        category: e.category.to_owned(),
                        day,
                        pairs,
                    })
                }
            }
        }
        let pairs = self.last.as_ref().expect("set above").pairs;
        for i in pairs {
            self.pairs[i as usize].1.add(e.kind, e.platform, e.value);
        }
    }

    /// Records a row the reader refused.
    pub fn reject(&mut self, row: u64, event_id: Option<String>, error: String) {
        self.rejected_rows += 1;
        if self.rejected.len() < MAX_LISTED_REJECTS {
            self.rejected.push(KpiReject { row, event_id, error });
        }
    }

    /// (cell, user) pairs held: what the memory grows with.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// The pair indices of a user's (platform, category, day) at every level.
    fn place(&mut self, user: &str, platform: Platform, category: &str, day: i64) -> [u32; 8] {
        let next_user = self.users.len() as u32;
        let user = match self.users.get(user) {
            Some(&u) => u,
            None => {
                self.users.insert(user.to_owned(), next_user);
                next_user
            }
        };
        let next_category = self.categories.len() as u32;
        let category = match self.category_index.get(category) {
            Some(&c) => c,
            None => {
                self.categories.push(category.to_owned());
                self.category_index.insert(category.to_owned(), next_category);
                next_category
            }
        };
        let mut out = [0u32; 8];
        for (slot, level) in out.iter_mut().zip(LEVELS) {
            let key = CellKey {
                platform: (level & PLATFORM != 0).then_some(platform),
                category: (level & CATEGORY != 0).then_some(category),
                day: (level & DAY != 0).then_some(day),
            };
            let next_cell = self.cells.len() as u32;
            let cell = *self.cell_index.entry(key).or_insert_with(|| {
                self.cells.push(key);
                next_cell
            });
            let next_pair = self.pairs.len() as u32;
            *slot = *self.pair_index.entry(u64::from(cell) << 32 | u64::from(user)).or_insert_with(|| {
                self.pairs.push((cell, Sums::default()));
                next_pair
            });
        }
        out
    }

    /// The report.
    pub fn finish(self, events_path: Option<String>) -> KpiReport {
        let n_metrics = Metric::ALL.len();
        let mut users = vec![0u64; self.cells.len()];
        let mut totals = vec![Sums::default(); self.cells.len()];
        let mut num = vec![0.0f64; self.cells.len() * n_metrics];
        let mut den = vec![0.0f64; self.cells.len() * n_metrics];
        // First-seen order: the same file gives the same floating-point sums.
        for (cell, s) in &self.pairs {
            let c = *cell as usize;
            users[c] += 1;
            totals[c].merge(s);
            for (k, m) in Metric::ALL.iter().enumerate() {
                let (n, d) = m.value(s);
                num[c * n_metrics + k] += n;
                den[c * n_metrics + k] += d;
            }
        }
        let mut by_level: BTreeMap<Level, Vec<(CellKey, KpiCell)>> = BTreeMap::new();
        for (c, key) in self.cells.iter().enumerate() {
            let t = &totals[c];
            let metrics = Metric::ALL
                .iter()
                .enumerate()
                .map(|(k, &m)| {
                    let (n, d) = (num[c * n_metrics + k], den[c * n_metrics + k]);
                    let defined = d > 0.0 && !(m == Metric::CrossPlatformRate && key.platform.is_some());
                    (m, defined.then(|| n / d))
                })
                .collect();
            let cell = KpiCell {
                platform: key.platform.map(|p| p.as_str().to_owned()),
                category: key.category.map(|i| self.categories[i as usize].clone()),
                day: key.day.map(day_label),
                users: users[c],
                events: t.events,
                visits: t.visits,
                orders: t.orders,
                gmv: t.gmv(),
                watch_minutes: t.watch_minutes(),
                interactions: t.interactions,
                metrics,
            };
            by_level.entry(key.level()).or_default().push((*key, cell));
        }
        let categories = &self.categories;
        let mut take = |level: Level| -> Vec<KpiCell> {
            let mut cells = by_level.remove(&level).unwrap_or_default();
            cells.sort_by(|(a, _), (b, _)| {
                (a.platform, a.category.map(|i| &categories[i as usize]), a.day).cmp(&(
                    b.platform,
                    b.category.map(|i| &categories[i as usize]),
                    b.day,
                ))
            });
            cells.into_iter().map(|(_, c)| c).collect()
        };
        let total = take(0).pop().unwrap_or_else(|| KpiCell {
            platform: None,
            category: None,
            day: None,
            users: 0,
            events: 0,
            visits: 0,
            orders: 0,
            gmv: 0.0,
            watch_minutes: 0.0,
            interactions: 0,
            metrics: Metric::ALL.iter().map(|&m| (m, None)).collect(),
        });
        let by_day = take(DAY);
        KpiReport {
            events_path,
            events: self.events,
            rejected_rows: self.rejected_rows,
            rejected: self.rejected,
            users: self.users.len() as u64,
            days: by_day.iter().filter_map(|c| c.day.clone()).collect(),
            metrics: Metric::ALL
                .iter()
                .map(|&m| KpiMetric { metric: m, kind: m.kind(), label: metric_label(m).to_owned() })
                .collect(),
            total,
            by_platform: take(PLATFORM),
            by_category: take(CATEGORY),
            by_day,
            by_platform_category: take(PLATFORM | CATEGORY),
            by_platform_day: take(PLATFORM | DAY),
            by_category_day: take(CATEGORY | DAY),
            by_platform_category_day: take(PLATFORM | CATEGORY | DAY),
        }
    }
}

/// Reads an event file in batches and computes its KPI report.
pub fn kpis_from_file(path: &Path) -> Result<KpiReport, KpiError> {
    let mut reader = EventReader::open(path)?;
    let mut acc = KpiAccumulator::new();
    let mut rejects = Vec::new();
    while let Some(raw) = reader.next_raw()? {
        decode_with(&raw, |_, e| acc.observe(&e), |r| rejects.push(r));
        for r in rejects.drain(..) {
            acc.reject(r.row, r.event_id, r.error.to_string());
        }
    }
    Ok(acc.finish(Some(path.display().to_string())))
}

/// The files a report was published as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiFiles {
    /// `kpis.json`.
    pub json: PathBuf,
    /// `kpis.html`.
    pub html: PathBuf,
}

/// Writes `kpis.json` and `kpis.html` into `dir` (created if missing), each through a
/// temporary file in the same folder, synced, then renamed into place.
pub fn write_kpis(report: &KpiReport, dir: &Path) -> Result<KpiFiles, KpiError> {
    std::fs::create_dir_all(dir).map_err(|source| KpiError::Io { path: dir.display().to_string(), source })?;
    let json = dir.join("kpis.json");
    let html = dir.join("kpis.html");
    let mut text = serde_json::to_vec_pretty(report)?;
    text.push(b'\n');
    publish(&json, &text)?;
    publish(&html, report.to_html().as_bytes())?;
    Ok(KpiFiles { json, html })
}

fn publish(path: &Path, bytes: &[u8]) -> Result<(), KpiError> {
    liveprofile_publish::Publication::write_all(path, bytes)
        .map_err(|e| KpiError::Io { path: e.path.display().to_string(), source: e.source })
}

impl KpiReport {
    /// A cell by its platform, category and day (`None`: every).
    pub fn cell(&self, platform: Option<Platform>, category: Option<&str>, day: Option<&str>) -> Option<&KpiCell> {
        let list: &[KpiCell] = match (platform.is_some(), category.is_some(), day.is_some()) {
            (false, false, false) => std::slice::from_ref(&self.total),
            (true, false, false) => &self.by_platform,
            (false, true, false) => &self.by_category,
            (false, false, true) => &self.by_day,
            (true, true, false) => &self.by_platform_category,
            (true, false, true) => &self.by_platform_day,
            (false, true, true) => &self.by_category_day,
            (true, true, true) => &self.by_platform_category_day,
        };
        list.iter().find(|c| {
            c.platform.as_deref() == platform.map(Platform::as_str)
                && c.category.as_deref() == category
                && c.day.as_deref() == day
        })
    }

    /// The report as one self-contained HTML page with inline SVG charts.
    pub fn to_html(&self) -> String {
        html::render(self)
    }
}

/// A metric value formatted for people.
pub(crate) fn format_value(m: Metric, v: Option<f64>) -> String {
    let Some(v) = v else { return "–".to_owned() };
    match m {
        Metric::OrdersPerVisit | Metric::RepurchaseRate | Metric::CrossPlatformRate => format!("{:.2}%", 100.0 * v),
        Metric::GmvPerUser => format!("¥{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// Text with `&`, `<`, `>` and `"` escaped for HTML.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Appends a formatted line (String writes do not fail).
pub(crate) fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    out.write_fmt(args).expect("writing to a String");
    out.push('\n');
}
