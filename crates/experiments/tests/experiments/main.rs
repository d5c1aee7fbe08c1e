//! Integration tests of the experiments crate.

mod analysis;
mod definitions;
mod kpis;
mod outcomes;
