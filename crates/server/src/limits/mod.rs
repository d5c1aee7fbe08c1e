//! What a caller can hold of the server, and for how long:
//!
//! - connections: a cap per port, a handshake timeout on gRPC, a request header timeout
//!   on metrics ([`connections`]);
//! - calls: an idle timeout on request streams, and a budget of request bytes in flight,
//!   taken from each message's encoded length before it is decoded ([`service`],
//!   [`budget`], [`codec`]);
//! - messages that cannot be decoded: INVALID_ARGUMENT ([`codec`]).
//!
//! HTTP/2 streams per connection and keepalive pings are set on the tonic server
//! (`server.rs`).

pub mod budget;
pub mod codec;
pub mod connections;
pub mod service;

pub use budget::{OVER_BUDGET, RequestBudget};
pub use codec::UNDECODABLE;
pub use connections::{ConnectInfo, GrpcIncoming, LimitedIo, MetricsListener};
pub use service::{CallLimits, Limited, STREAM_IDLE};

/// The trace of the call being served on this task, when it is traced.
pub(crate) fn current_trace() -> Option<std::sync::Arc<crate::traces::RequestTrace>> {
    budget::Call::current_trace()
}
