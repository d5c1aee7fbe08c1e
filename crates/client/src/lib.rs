//! A gRPC client of liveprofile, for recommendation engines, producers, tools and tests:
//! the messages and clients of `liveprofile.v1` (scoring, model admin, profiles and
//! ingest, experiments) and of the KServe v2 inference protocol, generated from `proto/`,
//! and a connection helper. It holds no server code: the service's own crate is
//! `liveprofile-server`.

#![allow(clippy::all)]

pub mod codec;

/// `liveprofile.v1`: scoring, model admin, profiles and ingest, experiments.
#[allow(missing_docs)]
pub mod v1 {
    tonic::include_proto!("liveprofile.v1");
}

/// `inference`: the KServe v2 / Open Inference Protocol.
#[allow(missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// A channel to `addr` (`host:port` or a full `http://` URI), connected now (no Nagle delay).
pub async fn connect(addr: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    tonic::transport::Endpoint::from_shared(uri)?.tcp_nodelay(true).connect().await
}

/// `message` with the admin token as its `authorization: Bearer` header, as the admin and
/// experiment services require.
///
/// # Panics
/// If `token` holds characters a header cannot carry (the server refuses such tokens).
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("a token a header can carry");
    request.metadata_mut().insert("authorization", value);
    request
}
