//! Benchmark clients of liveprofile, over the wire like any caller:
//!
//! - [`loadgen`]: concurrent callers of `liveprofile.v1` scoring or of any KServe v2
//!   server, throughput and latency percentiles;
//! - [`ingest_bench`]: ingest throughput and freshness of a running server (gRPC and
//!   MQTT), and the profile store's memory, replay and snapshot times in process;
//! - [`synthetic`]: deterministic synthetic live events, also used by tests.
//!
//! Each takes a plain config struct; the `liveprofile` binary parses the flags.

pub mod ingest_bench;
pub mod loadgen;
pub mod synthetic;
