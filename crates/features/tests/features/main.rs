//! Integration tests of the feature pipeline.

mod online_offline;
mod saturation;
mod tables;
