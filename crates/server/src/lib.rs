//! The scoring service: gRPC for recommendation engines (`liveprofile.v1`), data
//! scientists (model admin) and existing inference clients (KServe v2), with health,
//! reflection, dynamic batching, admission control and Prometheus metrics.
//!
//! - [`config`]: flags, environment and TOML file.
//! - [`server`]: start, readiness, graceful shutdown.
//! - [`scoring`], [`admin`], [`kserve`]: the gRPC services.
//! - [`batcher`]: dynamic batching on inference threads, bounded admission, deadlines.
//! - [`limits`]: connection, stream and request-size limits, and the protobuf codec.
//! - [`metrics`]: Prometheus metrics.
//! - [`loadgen`]: the load generator of the service benchmarks.

pub mod admin;
pub mod batcher;
pub mod config;
pub mod experiments;
pub mod ingest;
pub mod ingest_bench;
pub mod kserve;
pub mod limits;
pub mod loadgen;
pub mod metrics;
pub mod mqtt;
pub mod proto;
pub mod scoring;
pub mod server;
pub mod state;
pub mod synthetic;

pub use config::{ServeArgs, ServerConfig};
pub use server::{RunningServer, run, start, termination};
