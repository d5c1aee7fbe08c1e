//! The Tianchi Taobao UserBehavior CSV (`user_id,item_id,category_id,behavior_type,
//! timestamp`, no header) mapped to events: `pv` -> view_item, `fav` -> favorite,
//! `cart` -> add_to_cart, `buy` -> order; platform taobao; category = the category id;
//! no room or host; value 0 (the data set has no prices); timestamps from unix seconds.
//!
//! Malformed lines are counted and reported with their line numbers (or, with `strict`,
//! the first one is an error); nothing is dropped silently. Each user's events are written
//! in time order (ties in file order), users in order of first appearance.

use liveprofile_events::{EventIoError, EventKind, EventParts, EventWriter, Platform};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// One line that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// One-based line number.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines read (non-empty).
    pub lines: u64,
    /// Events written.
    pub events: u64,
    /// Users written.
    pub users: u64,
    /// Malformed lines, in file order.
    pub malformed: Vec<Malformed>,
}

/// Import failure.
#[derive(Debug, thiserror::Error)]
pub enum TaobaoImportError {
    /// Reading the CSV failed.
    #[error("{path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Strict mode: the first malformed line.
    #[error("{path}:{}: {}", malformed.line, malformed.reason)]
    Malformed {
        /// File.
        path: String,
        /// The line.
        malformed: Malformed,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] EventIoError),
}

struct Row {
    ts_ms: i64,
    item: String,
    category: String,
    kind: EventKind,
    line: u64,
}

fn parse_line(line: &str) -> Result<(String, Row), String> {
    let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
    if fields.len() != 5 {
        return Err(format!("expected 5 fields, found {}", fields.len()));
    }
    let digits = |name: &str, v: &str| -> Result<(), String> {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            Err(format!("{name} {v:?} is not a non-negative integer"))
        } else {
            Ok(())
        }
    };
    digits("user_id", fields[0])?;
    digits("item_id", fields[1])?;
    digits("category_id", fields[2])?;
    let kind = match fields[3] {
        "pv" => EventKind::ViewItem,
        "fav" => EventKind::Favorite,
        "cart" => EventKind::AddToCart,
        "buy" => EventKind::Order,
        other => return Err(format!("unknown behavior_type {other:?}")),
    };
    let secs: i64 = fields[4].parse().map_err(|_| format!("timestamp {:?} is not an integer", fields[4]))?;
    let ts_ms = secs.checked_mul(1000).filter(|t| *t >= 0).ok_or_else(|| format!("timestamp {secs} out of range"))?;
    Ok((fields[0].to_owned(), Row { ts_ms, item: fields[1].to_owned(), category: fields[2].to_owned(), kind, line: 0 }))
}

/// Imports `input` into the event file `output`.
pub fn import_taobao(input: &Path, output: &Path, strict: bool) -> Result<ImportReport, TaobaoImportError> {
    let path = input.display().to_string();
    let file = std::fs::File::open(input).map_err(|source| TaobaoImportError::Read { path: path.clone(), source })?;
    let mut report = ImportReport::default();
    let mut order: Vec<String> = Vec::new();
    let mut users: HashMap<String, Vec<Row>> = HashMap::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| TaobaoImportError::Read { path: path.clone(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let line_no = i as u64 + 1;
        match parse_line(&line) {
            Ok((user, mut row)) => {
                row.line = line_no;
                users
                    .entry(user.clone())
                    .or_insert_with(|| {
                        order.push(user);
                        Vec::new()
                    })
                    .push(row);
            }
            Err(reason) => {
                let malformed = Malformed { line: line_no, reason };
                if strict {
                    return Err(TaobaoImportError::Malformed { path, malformed });
                }
                report.malformed.push(malformed);
            }
        }
    }
    let mut writer = EventWriter::create(output)?;
    for user in &order {
        let mut rows = users.remove(user).unwrap_or_default();
        rows.sort_by_key(|r| r.ts_ms);
        for r in &rows {
            writer.append_parts(EventParts {
                event_id: &format!("tb-{}", r.line),
                ts_ms: r.ts_ms,
                platform: Platform::Taobao,
                user_id: user,
                platform_user_id: user,
                room_id: None,
                host_id: None,
                category: &r.category,
                kind: r.kind,
                item_id: Some(&r.item),
                value: 0.0,
                coupon: false,
            })?;
        }
    }
    report.events = writer.finish()?;
    report.users = order.len() as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveprofile_events::EventReader;

    #[test]
    fn maps_rows_sorts_per_user_and_reports_malformed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ub.csv");
        std::fs::write(
            &csv,
            "1,100,7,pv,1511658000\n1,101,7,buy,1511650000\n2,5,9,cart,1511700000\nbad line\n2,5,9,click,1511700000\n1,102,8,fav,1511660000\n3,1,1,pv,-5\n",
        )
        .unwrap();
        let out = dir.path().join("events.parquet");
        let report = import_taobao(&csv, &out, false).unwrap();
        assert_eq!(report.lines, 7);
        assert_eq!(report.events, 4);
        assert_eq!(report.users, 2);
        let lines: Vec<u64> = report.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, vec![4, 5, 7]);
        assert_eq!(report.malformed[0].reason, "expected 5 fields, found 1");
        assert_eq!(report.malformed[1].reason, "unknown behavior_type \"click\"");
        assert_eq!(report.malformed[2].reason, "timestamp -5 out of range");

        let read = EventReader::open(&out).unwrap().read_all().unwrap();
        assert!(read.rejected.is_empty());
        let got: Vec<(&str, i64, EventKind, &str)> =
            read.events.iter().map(|e| (e.user_id.as_str(), e.ts_ms, e.kind, e.category.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("1", 1_511_650_000_000, EventKind::Order, "7"),
                ("1", 1_511_658_000_000, EventKind::ViewItem, "7"),
                ("1", 1_511_660_000_000, EventKind::Favorite, "8"),
                ("2", 1_511_700_000_000, EventKind::AddToCart, "9"),
            ]
        );
        assert_eq!(read.events[0].event_id, "tb-2");
        assert_eq!(read.events[0].item_id.as_deref(), Some("101"));
        assert_eq!(read.events[0].room_id, None);
    }

    #[test]
    fn strict_mode_fails_on_the_first_malformed_line() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ub.csv");
        std::fs::write(&csv, "1,100,7,pv,1511658000\n1,x,7,pv,1511658000\n").unwrap();
        let out = dir.path().join("events.parquet");
        let err = import_taobao(&csv, &out, true).unwrap_err();
        assert_eq!(err.to_string(), format!("{}:2: item_id \"x\" is not a non-negative integer", csv.display()));
        assert!(!out.exists());
    }
}
