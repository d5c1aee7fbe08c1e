//! The feature pipeline (placeholder while the drivers are written).
#![allow(missing_docs)]
pub mod tags;
