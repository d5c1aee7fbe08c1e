//! Integration tests of the simulator: calibration to the seed's figures, determinism,
//! and ground truth that matches the labels the feature pipeline computes.

mod calibration;
mod experiment_calibration;
mod experiments;
mod truth;
