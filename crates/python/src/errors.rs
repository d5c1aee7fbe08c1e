//! Exceptions: every Rust error becomes one of these, carrying the Rust message whole
//! (file or table, row, column or feature, reason).
//!
//! - `LiveprofileError`: the base class.
//! - `ModelLoadError`: a model package that does not load (checksum, schema, golden parity,
//!   manifest, missing files).
//! - `DataError`: data that cannot be scored or built from: missing or duplicate columns,
//!   a bad value (row and column named), an event table without the contract's columns.
//! - `SimulationError`: a simulation that cannot run or write its files.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(liveprofile, LiveprofileError, PyException, "Base class of liveprofile's errors.");
create_exception!(liveprofile, ModelLoadError, LiveprofileError, "A model package that does not load.");
create_exception!(liveprofile, DataError, LiveprofileError, "Data that cannot be scored or built from.");
create_exception!(liveprofile, SimulationError, LiveprofileError, "A simulation that cannot run or write.");

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("LiveprofileError", py.get_type::<LiveprofileError>())?;
    m.add("ModelLoadError", py.get_type::<ModelLoadError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("SimulationError", py.get_type::<SimulationError>())?;
    Ok(())
}

/// A `DataError` with the error's message.
pub fn data_error(e: impl std::fmt::Display) -> PyErr {
    DataError::new_err(e.to_string())
}
