//! Integration tests of the scoring service: real servers on loopback ports, real tonic
//! clients, the bundled models.

mod admin;
mod common;
mod drift;
mod experiments;
mod kserve;
mod load;
mod mqtt_poison;
mod prediction_log;
mod profiles;
mod reliability;
mod scoring;
mod traces;
mod training_set;
