//! The scoring service: gRPC for recommendation engines (`liveprofile.v1`), data
//! scientists (model admin) and existing inference clients (KServe v2), with health,
//! reflection, dynamic batching, admission control and Prometheus metrics.
//!
//! - [`config`]: settings, their defaults and checks.
//! - [`server`]: start, readiness, graceful shutdown.
//! - [`scoring`], [`admin`], [`kserve`]: the gRPC services.
//! - [`batcher`]: dynamic batching on inference threads, bounded admission, deadlines.
//! - [`limits`]: connection, stream and request-size limits, and the protobuf codec.
//! - [`metrics`]: Prometheus metrics; [`traces`]: OpenTelemetry traces over OTLP; [`drift`]:
//!   live traffic against each version's training reference, off the request path.
//! - [`ingest`], [`mqtt`]: profile ingest over gRPC and MQTT; [`experiments`]: the
//!   experiment service.

pub mod admin;
pub mod batcher;
pub mod config;
pub mod drift;
pub mod experiments;
pub mod ingest;
pub mod kserve;
pub mod limits;
pub mod metrics;
pub mod mqtt;
pub mod predictions;
pub mod proto;
pub mod scoring;
pub mod server;
pub mod state;
pub mod traces;

pub use config::ServerConfig;
pub use server::{RunningServer, run, start, termination};
