//! Integration tests of the feature pipeline.

mod online_offline;
mod tables;
