//! `liveprofile._native`: the Rust half of the `liveprofile` Python package. It holds no
//! logic of its own: models load and score through `liveprofile-runtime` and
//! `liveprofile-batch` (the server's checks, plans and bits), feature tables come from
//! `liveprofile-features`' offline driver, simulations from `liveprofile-simulator`.
//!
//! Arrow data crosses the boundary through the Arrow C data interface (no copy through
//! Python objects), and the GIL is released while Rust works, so Python threads (and
//! Spark's Arrow serializer in the same worker) keep running.
//!
//! - [`model`]: `Model.load`, `Model.score`, `Model.score_rows`.
//! - [`tables`]: user feature tables and conversion examples from event tables.
//! - [`drift`]: drift references from training rows.
//! - [`errors`]: the exception classes and how Rust errors map onto them.

mod drift;
mod errors;
mod model;
mod tables;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(tables::user_table, m)?)?;
    m.add_function(wrap_pyfunction!(tables::examples_table, m)?)?;
    m.add_function(wrap_pyfunction!(tables::check_label_coverage, m)?)?;
    m.add_function(wrap_pyfunction!(tables::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(drift::drift_reference, m)?)?;
    m.add("DEFAULT_SIMULATION_START_MS", liveprofile_simulator::DEFAULT_START_MS)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
