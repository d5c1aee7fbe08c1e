//! The offline driver: user feature tables as of a cut-off (with labels from the window
//! after it) and conversion examples at decision points, over an [`EventSet`], on all
//! cores, written in chunks so memory holds one chunk of rows at a time.

use crate::aggregates::{FeatureEvent, RECENCY_CAP_HOURS, user_features};
use crate::conversion::{DECISION_OFFSETS_MS, HostHistory, VISIT_FEATURES, VisitSoFar, derive_conversion_features};
use crate::dataset::{EventSet, NONE, UserEvents};
use crate::labels::user_labels;
use crate::offline::{PrefixSums, user_features_as_of};
use crate::schema::{conversion_schema, user_schema};
use crate::table::{FeatureTable, Row, TableError, TableWriter};
use liveprofile_events::{EventKind, HOUR_MS, Platform};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

const CHUNK_USERS: usize = 4_096;

/// Events older than this before an as-of time cannot change its features (windows are
/// at most 28 days, recency is capped at 720 hours).
const LOOKBACK_MS: i64 = (RECENCY_CAP_HOURS as i64 + 24) * HOUR_MS;

/// The data must reach at least this close to the end of the label window (real data
/// sets end a few seconds or minutes before a day boundary).
pub const LABEL_COVERAGE_SLACK_MS: i64 = HOUR_MS;

/// Options of a user feature table.
#[derive(Debug, Clone, Copy)]
pub struct UserTableOptions {
    /// As-of time of the features (inclusive).
    pub cutoff_ms: i64,
    /// Length of the label window after the cut-off; `None` writes no labels.
    pub label_window_ms: Option<i64>,
}

/// Errors of the offline driver.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The labels need data the file does not have.
    #[error(
        "the label window ends at {window_end_ms} but the newest event is at {newest_ms}: labels would be wrong (choose an earlier cut-off or --no-labels)"
    )]
    LabelWindowBeyondData {
        /// End of the label window.
        window_end_ms: i64,
        /// Newest event.
        newest_ms: i64,
    },
    /// No user has history at the cut-off.
    #[error("no user has events at or before the cut-off")]
    NoUsers,
    /// Writing failed.
    #[error(transparent)]
    Table(#[from] TableError),
}

fn user_row(u: &UserEvents, opts: &UserTableOptions) -> Option<Row> {
    let history_end = u.events.partition_point(|e| e.ts_ms <= opts.cutoff_ms);
    if history_end == 0 {
        return None;
    }
    let start = u.events.partition_point(|e| e.ts_ms <= opts.cutoff_ms - LOOKBACK_MS);
    let mut features = Vec::with_capacity(user_features().len());
    user_features_as_of(&u.events[start..history_end], opts.cutoff_ms, &mut features);
    let labels =
        opts.label_window_ms.map(|w| user_labels(&u.events, &u.hosts, opts.cutoff_ms, w).to_vec()).unwrap_or_default();
    let main_platform = main_platform(&u.events[start..history_end]);
    Some(Row {
        strings: vec![u.user_id.clone(), main_platform.as_str().to_owned()],
        ints: vec![opts.cutoff_ms],
        features,
        labels,
    })
}

/// The platform with most of a user's events in the look-back window (ties go to the
/// platform listed first), kept beside the features so that analyses can compare
/// platforms; it is not a model input.
pub fn main_platform(events: &[FeatureEvent]) -> Platform {
    let mut counts = [0usize; Platform::ALL.len()];
    for e in events {
        counts[e.platform.index()] += 1;
    }
    let best = (0..counts.len()).fold(0, |best, i| if counts[i] > counts[best] { i } else { best });
    Platform::ALL[best]
}

/// Id columns of a user feature table: text, then integer.
pub const USER_TABLE_IDS: (&[&str], &[&str]) = (&["user_id", "main_platform"], &["as_of_ms"]);

/// Id columns of a conversion examples table: text, then integer.
pub const EXAMPLE_TABLE_IDS: (&[&str], &[&str]) = (&["user_id", "room_id", "platform"], &["enter_ms", "decision_ms"]);

/// Refuses a label window that ends after the data: with `newest_ms` the newest event of
/// the whole data, the labels of the last days would be wrong.
pub fn check_label_coverage(newest_ms: Option<i64>, opts: &UserTableOptions) -> Result<(), BuildError> {
    if let Some(w) = opts.label_window_ms {
        let newest_ms = newest_ms.unwrap_or(i64::MIN);
        if newest_ms < opts.cutoff_ms + w - LABEL_COVERAGE_SLACK_MS {
            return Err(BuildError::LabelWindowBeyondData { window_end_ms: opts.cutoff_ms + w, newest_ms });
        }
    }
    Ok(())
}

fn user_table_writer(opts: &UserTableOptions, out: Option<&Path>) -> Result<TableWriter, BuildError> {
    let (strings, ints) = USER_TABLE_IDS;
    let labels = opts.label_window_ms.is_some();
    Ok(match out {
        Some(path) => TableWriter::create(path, strings, ints, &user_schema(), labels)?,
        None => TableWriter::in_memory(strings, ints, &user_schema(), labels),
    })
}

/// Appends the row of every user with history at the cut-off, on all cores a chunk of
/// users at a time.
fn write_user_rows(set: &EventSet, opts: &UserTableOptions, writer: &mut TableWriter) -> Result<(), BuildError> {
    for chunk in set.users.chunks(CHUNK_USERS) {
        let rows: Vec<Option<Row>> = chunk.par_iter().map(|u| user_row(u, opts)).collect();
        for row in rows.iter().flatten() {
            writer.append(row)?;
        }
    }
    Ok(())
}

/// Writes the user feature table; returns the number of users written.
pub fn build_user_table(set: &EventSet, opts: UserTableOptions, out: &Path) -> Result<u64, BuildError> {
    check_label_coverage(set.max_ts_ms, &opts)?;
    let mut writer = user_table_writer(&opts, Some(out))?;
    write_user_rows(set, &opts, &mut writer)?;
    if writer.rows() == 0 {
        return Err(BuildError::NoUsers);
    }
    Ok(writer.finish()?)
}

/// The user feature table in memory: the rows and checks of [`build_user_table`].
pub fn user_table(set: &EventSet, opts: UserTableOptions) -> Result<FeatureTable, BuildError> {
    check_label_coverage(set.max_ts_ms, &opts)?;
    let table = user_table_part(set, opts)?;
    if table.rows == 0 {
        return Err(BuildError::NoUsers);
    }
    Ok(table)
}

/// One part of a user feature table built in pieces (a distributed job's group of
/// users): the rows of [`user_table`] for these users, without the checks that belong to
/// the whole data (label coverage, see [`check_label_coverage`], and at least one user),
/// so a part may be empty.
pub fn user_table_part(set: &EventSet, opts: UserTableOptions) -> Result<FeatureTable, BuildError> {
    let mut writer = user_table_writer(&opts, None)?;
    write_user_rows(set, &opts, &mut writer)?;
    Ok(writer.finish_in_memory()?)
}

/// Options of conversion examples.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExampleOptions {
    /// Only visits entered at or after this time (leaves earlier days as history).
    pub from_ms: Option<i64>,
    /// Only visits entered before this time.
    pub to_ms: Option<i64>,
}

/// Sorted enter and order times of every host, from all users.
pub fn host_histories(set: &EventSet) -> Vec<HostHistory> {
    let mut hosts = vec![HostHistory::default(); set.hosts.len()];
    for u in &set.users {
        for (e, h) in u.events.iter().zip(&u.hosts) {
            if *h == NONE {
                continue;
            }
            match e.kind {
                EventKind::Enter => hosts[*h as usize].enters.push(e.ts_ms),
                EventKind::Order => hosts[*h as usize].orders.push(e.ts_ms),
                _ => {}
            }
        }
    }
    hosts.par_iter_mut().for_each(|h| {
        h.enters.sort_unstable();
        h.orders.sort_unstable();
    });
    hosts
}

/// One conversion example.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionExample {
    /// Room of the visit (index into the set's rooms).
    pub room: u32,
    /// Platform.
    pub platform: Platform,
    /// Enter time.
    pub enter_ms: i64,
    /// Decision point.
    pub decision_ms: i64,
    /// Features in conversion schema order.
    pub features: Vec<f32>,
    /// Whether the visit ends in an order after the decision point.
    pub label: bool,
}

struct OpenVisit {
    enter_idx: usize,
    order_ms: Option<i64>,
}

/// Conversion examples of one user (offline driver).
pub fn user_examples(u: &UserEvents, hosts: &[HostHistory], opts: &ExampleOptions) -> Vec<ConversionExample> {
    let mut out = Vec::new();
    let prefix = PrefixSums::new(&u.events);
    let mut open: HashMap<u32, OpenVisit> = HashMap::new();
    for (i, e) in u.events.iter().enumerate() {
        let room = u.rooms[i];
        if room == NONE {
            continue;
        }
        match e.kind {
            EventKind::Enter => {
                open.insert(room, OpenVisit { enter_idx: i, order_ms: None });
            }
            EventKind::Order => {
                if let Some(v) = open.get_mut(&room) {
                    v.order_ms.get_or_insert(e.ts_ms);
                }
            }
            EventKind::Leave => {
                if let Some(v) = open.remove(&room) {
                    visit_examples(u, &prefix, hosts, opts, room, &v, i, &mut out);
                }
            }
            _ => {}
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn visit_examples(
    u: &UserEvents,
    prefix: &PrefixSums<'_>,
    hosts: &[HostHistory],
    opts: &ExampleOptions,
    room: u32,
    v: &OpenVisit,
    leave_idx: usize,
    out: &mut Vec<ConversionExample>,
) {
    let enter = u.events[v.enter_idx];
    let leave_ms = u.events[leave_idx].ts_ms;
    if opts.from_ms.is_some_and(|f| enter.ts_ms < f) || opts.to_ms.is_some_and(|t| enter.ts_ms >= t) {
        return;
    }
    let mut user_at_enter: Option<Vec<f32>> = None;
    for offset in DECISION_OFFSETS_MS {
        let decision_ms = enter.ts_ms + offset;
        if leave_ms <= decision_ms || v.order_ms.is_some_and(|o| o <= decision_ms) {
            continue;
        }
        let user = user_at_enter.get_or_insert_with(|| {
            let mut f = Vec::with_capacity(user_features().len());
            prefix.features(v.enter_idx + 1, enter.ts_ms, &mut f);
            f
        });
        let mut visit = VisitSoFar::new(enter.ts_ms, enter.platform, enter.category);
        for (e, r) in u.events[v.enter_idx + 1..leave_idx].iter().zip(&u.rooms[v.enter_idx + 1..leave_idx]) {
            if *r == room && e.ts_ms <= decision_ms {
                visit.observe(e);
            }
        }
        let host = u.hosts[v.enter_idx];
        let stats = if host == NONE { Default::default() } else { hosts[host as usize].stats(decision_ms) };
        let mut features = Vec::with_capacity(VISIT_FEATURES.len() + user_features().len());
        derive_conversion_features(&visit, decision_ms, stats, user, &mut features);
        out.push(ConversionExample {
            room,
            platform: enter.platform,
            enter_ms: enter.ts_ms,
            decision_ms,
            features,
            label: v.order_ms.is_some(),
        });
    }
}

/// Conversion features of the user's visit to `room` that is open, and not yet converted,
/// at `decision_ms` (the last `enter` of the room at or before it, with no `leave` or
/// `order` of the room after that enter up to it); `None` when there is no such visit.
/// The offline statement of what the online driver answers for a visit at any moment (the
/// examples' decision points are three such moments): the user's features as of entering,
/// the visit so far, the host's record as of the decision.
pub fn open_visit_features(u: &UserEvents, hosts: &[HostHistory], room: u32, decision_ms: i64) -> Option<Vec<f32>> {
    let end = u.events.partition_point(|e| e.ts_ms <= decision_ms);
    // (enter index, converted)
    let mut open: Option<(usize, bool)> = None;
    for i in (0..end).filter(|&i| u.rooms[i] == room) {
        match u.events[i].kind {
            EventKind::Enter => open = Some((i, false)),
            EventKind::Order => {
                if let Some(v) = &mut open {
                    v.1 = true;
                }
            }
            EventKind::Leave => open = None,
            _ => {}
        }
    }
    let (enter_idx, converted) = open?;
    if converted {
        return None;
    }
    let enter = u.events[enter_idx];
    let mut user = Vec::with_capacity(user_features().len());
    user_features_as_of(&u.events[..=enter_idx], enter.ts_ms, &mut user);
    let mut visit = VisitSoFar::new(enter.ts_ms, enter.platform, enter.category);
    for i in (enter_idx + 1..end).filter(|&i| u.rooms[i] == room) {
        visit.observe(&u.events[i]);
    }
    let host = u.hosts[enter_idx];
    let stats = if host == NONE { Default::default() } else { hosts[host as usize].stats(decision_ms) };
    let mut features = Vec::with_capacity(VISIT_FEATURES.len() + user.len());
    derive_conversion_features(&visit, decision_ms, stats, &user, &mut features);
    Some(features)
}

/// Writes the conversion examples table; returns (examples, positives).
pub fn build_examples(set: &EventSet, opts: ExampleOptions, out: &Path) -> Result<(u64, u64), BuildError> {
    let (strings, ints) = EXAMPLE_TABLE_IDS;
    let writer = TableWriter::create(out, strings, ints, &conversion_schema(), true)?;
    let (writer, positives) = write_examples(set, &opts, writer)?;
    Ok((writer.finish()?, positives))
}

/// The conversion examples table in memory, with its number of positives: the rows of
/// [`build_examples`].
pub fn examples_table(set: &EventSet, opts: ExampleOptions) -> Result<(FeatureTable, u64), BuildError> {
    let (strings, ints) = EXAMPLE_TABLE_IDS;
    let writer = TableWriter::in_memory(strings, ints, &conversion_schema(), true);
    let (writer, positives) = write_examples(set, &opts, writer)?;
    Ok((writer.finish_in_memory()?, positives))
}

/// Appends every example; returns the writer and the number of positives.
fn write_examples(
    set: &EventSet,
    opts: &ExampleOptions,
    mut writer: TableWriter,
) -> Result<(TableWriter, u64), BuildError> {
    let hosts = host_histories(set);
    // Computing chunk k+1 (all cores) overlaps with writing chunk k (one thread).
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Vec<ConversionExample>>)>(1);
    std::thread::scope(|scope| {
        let write = scope.spawn(move || -> Result<(TableWriter, u64), BuildError> {
            let mut positives = 0;
            for (first, per_user) in rx {
                for (u, examples) in set.users[first..].iter().zip(per_user) {
                    for ex in examples {
                        positives += u64::from(ex.label);
                        writer.append(&Row {
                            strings: vec![
                                u.user_id.clone(),
                                set.rooms[ex.room as usize].clone(),
                                ex.platform.as_str().into(),
                            ],
                            ints: vec![ex.enter_ms, ex.decision_ms],
                            features: ex.features,
                            labels: vec![ex.label],
                        })?;
                    }
                }
            }
            Ok((writer, positives))
        });
        for (i, chunk) in set.users.chunks(CHUNK_USERS).enumerate() {
            let per_user: Vec<Vec<ConversionExample>> =
                chunk.par_iter().map(|u| user_examples(u, &hosts, opts)).collect();
            if tx.send((i * CHUNK_USERS, per_user)).is_err() {
                break; // the writer failed; its error is returned below
            }
        }
        drop(tx);
        write.join().expect("writer thread does not panic")
    })
}
