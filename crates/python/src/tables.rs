//! Feature tables from event tables (the offline driver of `liveprofile features`), and
//! simulations (`liveprofile simulate`).

use crate::errors::{DataError, SimulationError, data_error};
use crate::model::read_stream;
use arrow::array::ffi_stream::ArrowArrayStreamReader;
use arrow_pyarrow::PyArrowType;
use liveprofile_features::{EventSet, ExampleOptions, FeatureTable, UserTableOptions};
use liveprofile_simulator::{SimConfig, Simulator};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

/// Names the caller's events in error messages.
const EVENTS_SOURCE: &str = "<events table>";

/// How many rejected rows a report lists (all are counted).
const LISTED_REJECTS: usize = 10;

/// The events of an Arrow stream, every row checked as an event file's rows are.
fn event_set(py: Python<'_>, events: ArrowArrayStreamReader) -> PyResult<EventSet> {
    let (_, batches) = read_stream(events)?;
    py.detach(|| EventSet::from_batches(EVENTS_SOURCE, batches.iter())).map_err(data_error)
}

/// What reading the events found: rows, accepted, rejected (with the first reasons) and
/// out-of-order events, as the CLI prints them.
fn events_report<'py>(py: Python<'py>, set: &EventSet) -> PyResult<Bound<'py, PyDict>> {
    let report = PyDict::new(py);
    report.set_item("rows", set.rows)?;
    report.set_item("accepted", set.accepted())?;
    report.set_item("rejected", set.rejected.len())?;
    report.set_item("out_of_order", set.out_of_order.len())?;
    let first: Vec<String> = set
        .rejected
        .iter()
        .take(LISTED_REJECTS)
        .map(|r| {
            let id = r.event_id.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
            format!("row {}{id}: {}", r.row, r.error)
        })
        .collect();
    report.set_item("first_rejected", first)?;
    Ok(report)
}

/// A feature table as a `pyarrow.Table` (the feature schema JSON in its metadata).
fn to_table(py: Python<'_>, table: FeatureTable) -> PyResult<Bound<'_, PyAny>> {
    crate::model::to_table(py, table.schema, table.batches)
}

/// The user feature table as of `cutoff_ms` (labels from the `label_window_ms` after it,
/// none when `None`), with the report of the events read. With `part`, one part of a table
/// built in pieces (a distributed job's group of users): no label coverage check (see
/// `check_label_coverage`) and possibly no rows.
#[pyfunction]
#[pyo3(signature = (events, cutoff_ms, label_window_ms, part = false))]
pub fn user_table<'py>(
    py: Python<'py>,
    events: PyArrowType<ArrowArrayStreamReader>,
    cutoff_ms: i64,
    label_window_ms: Option<i64>,
    part: bool,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
    let opts = UserTableOptions { cutoff_ms, label_window_ms };
    let set = event_set(py, events.0)?;
    let build = if part { liveprofile_features::user_table_part } else { liveprofile_features::user_table };
    let table = py.detach(|| build(&set, opts)).map_err(data_error)?;
    Ok((to_table(py, table)?, events_report(py, &set)?))
}

/// Refuses a label window that ends after the newest event of the whole data.
#[pyfunction]
#[pyo3(signature = (newest_ms, cutoff_ms, label_window_ms))]
pub fn check_label_coverage(newest_ms: Option<i64>, cutoff_ms: i64, label_window_ms: Option<i64>) -> PyResult<()> {
    liveprofile_features::check_label_coverage(newest_ms, &UserTableOptions { cutoff_ms, label_window_ms })
        .map_err(|e| DataError::new_err(e.to_string()))
}

/// Conversion examples (room visits at decision points) of visits entered in
/// `[from_ms, to_ms)`, with the number of positives and the report of the events read.
#[pyfunction]
#[pyo3(signature = (events, from_ms = None, to_ms = None))]
pub fn examples_table<'py>(
    py: Python<'py>,
    events: PyArrowType<ArrowArrayStreamReader>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> PyResult<(Bound<'py, PyAny>, u64, Bound<'py, PyDict>)> {
    let set = event_set(py, events.0)?;
    let (table, positives) = py
        .detach(|| liveprofile_features::examples_table(&set, ExampleOptions { from_ms, to_ms }))
        .map_err(data_error)?;
    Ok((to_table(py, table)?, positives, events_report(py, &set)?))
}

/// Simulates `users` users over `days` days into the event file `out` (the ground truth
/// beside it), as `liveprofile simulate` does with the same arguments, bit for bit.
#[pyfunction]
#[pyo3(signature = (out, users, days, seed, start_ms))]
pub fn simulate(
    py: Python<'_>,
    out: PathBuf,
    users: u32,
    days: u32,
    seed: u64,
    start_ms: i64,
) -> PyResult<Bound<'_, PyDict>> {
    let summary = py
        .detach(|| {
            let sim = Simulator::new(SimConfig { users, days, seed, start_ms })?;
            sim.write(&out, &|_| {})
        })
        .map_err(|e| SimulationError::new_err(format!("{}: {e}", out.display())))?;
    let report = PyDict::new(py);
    report.set_item("events_path", out)?;
    report.set_item("truth_path", summary.truth_path)?;
    report.set_item("users", summary.users)?;
    report.set_item("events", summary.events)?;
    Ok(report)
}
