//! Accepting connections on both ports. Each port has a cap on open connections: at the
//! cap a new connection is closed at once (and counted), so idle sockets cannot use up
//! the process's descriptors. Each connection also has a deadline:
//!
//! - gRPC: the TLS handshake (if any), the HTTP/2 preface and the first call must arrive
//!   within the handshake timeout of connecting; a connection that sent no call by then
//!   is closed.
//! - metrics: each HTTP request must arrive within the header timeout of connecting or of
//!   the previous answer.
//!
//! A connection past its deadline fails its next read: the HTTP layer closes it.

use crate::metrics::Metrics;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Wait after an accept error that is not one connection's (out of descriptors, say)
/// before accepting again, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a port admits.
#[derive(Debug, Clone)]
struct Gate {
    /// `grpc` or `metrics`: the label of the port's metrics.
    port: &'static str,
    permits: Arc<Semaphore>,
    deadline: Duration,
    metrics: Arc<Metrics>,
}

impl Gate {
    fn new(port: &'static str, max_connections: usize, deadline: Duration, metrics: Arc<Metrics>) -> Self {
        Gate { port, permits: Arc::new(Semaphore::new(max_connections)), deadline, metrics }
    }

    /// The connection, if the port is under its cap; else it is closed and counted.
    fn admit(&self, stream: TcpStream, per_request: bool) -> Option<LimitedIo> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.connections_refused.with_label_values(&[self.port]).inc();
            tracing::debug!(port = self.port, peer = ?stream.peer_addr().ok(), "connection closed: at the connection cap");
            return None;
        };
        let _ = stream.set_nodelay(true);
        self.metrics.connections_open.with_label_values(&[self.port]).inc();
        let timer = Box::pin(tokio::time::sleep(self.deadline));
        let watch = if per_request {
            Watch::Request { every: self.deadline, timer }
        } else {
            Watch::FirstCall { called: Arc::new(AtomicBool::new(false)), timer: Some(timer) }
        };
        Some(LimitedIo { stream, watch, timed_out: false, _open: Open { _permit: permit, gate: self.clone() } })
    }
}

/// An accept error that concerns one connection only: accept the next at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The gRPC port's connections, for `serve_with_incoming_shutdown`. Dropping it closes
/// the listening socket.
#[derive(Debug)]
pub struct GrpcIncoming {
    listener: TcpListener,
    gate: Gate,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl GrpcIncoming {
    /// At most `max_connections` open; each must make its first call within `handshake`.
    pub fn new(listener: TcpListener, max_connections: usize, handshake: Duration, metrics: Arc<Metrics>) -> Self {
        GrpcIncoming { listener, gate: Gate::new("grpc", max_connections, handshake, metrics), backoff: None }
    }
}

impl Stream for GrpcIncoming {
    type Item = io::Result<LimitedIo>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(backoff) = &mut this.backoff {
                ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            match ready!(this.listener.poll_accept(cx)) {
                Ok((stream, _)) => {
                    if let Some(io) = this.gate.admit(stream, false) {
                        return Poll::Ready(Some(Ok(io)));
                    }
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept gRPC connections; retrying");
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }
}

/// The metrics port's connections, for `axum::serve`.
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
    gate: Gate,
}

impl MetricsListener {
    /// At most `max_connections` open; each request must arrive within `header_timeout`.
    pub fn new(listener: TcpListener, max_connections: usize, header_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        MetricsListener { listener, gate: Gate::new("metrics", max_connections, header_timeout, metrics) }
    }
}

impl axum::serve::Listener for MetricsListener {
    type Io = LimitedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedIo, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    if let Some(io) = self.gate.admit(stream, true) {
                        return (io, addr);
                    }
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept metrics connections; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An open connection's place under the cap, given back on drop.
#[derive(Debug)]
struct Open {
    _permit: OwnedSemaphorePermit,
    gate: Gate,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gate.metrics.connections_open.with_label_values(&[self.gate.port]).dec();
    }
}

/// The deadline a connection is held to.
#[derive(Debug)]
enum Watch {
    /// gRPC: until the first call arrives (then no deadline).
    FirstCall { called: Arc<AtomicBool>, timer: Option<Pin<Box<Sleep>>> },
    /// Metrics: each request within `every` of connecting or of the last answer.
    Request { every: Duration, timer: Pin<Box<Sleep>> },
}

/// A connection of either port: its place under the cap and its deadline.
#[derive(Debug)]
pub struct LimitedIo {
    stream: TcpStream,
    watch: Watch,
    timed_out: bool,
    _open: Open,
}

impl LimitedIo {
    /// Whether the deadline has passed (polling its timer otherwise, so that the reader is
    /// woken when it does).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timed_out {
            return true;
        }
        let timer = match &mut self.watch {
            Watch::FirstCall { called, timer } => {
                if called.load(Ordering::Acquire) {
                    *timer = None;
                }
                match timer {
                    Some(t) => t,
                    None => return false,
                }
            }
            Watch::Request { timer, .. } => timer,
        };
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.timed_out = true;
        let gate = &self._open.gate;
        gate.metrics.connections_timed_out.with_label_values(&[gate.port]).inc();
        tracing::debug!(port = gate.port, peer = ?self.stream.peer_addr().ok(), "connection closed: nothing in time");
        true
    }

    /// An answer went out: the next request has its own time.
    fn answered(&mut self) {
        if let Watch::Request { every, timer } = &mut self.watch {
            timer.as_mut().reset(Instant::now() + *every);
        }
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "nothing received in time")));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf));
        if matches!(written, Ok(n) if n > 0) {
            this.answered();
        }
        Poll::Ready(written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs));
        if matches!(written, Ok(n) if n > 0) {
            this.answered();
        }
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// What a gRPC call knows of its connection (an extension of every request): the
/// addresses, and the flag that lifts the handshake deadline once a call has arrived.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// Local and remote address.
    pub tcp: TcpConnectInfo,
    called: Arc<AtomicBool>,
}

impl ConnectInfo {
    /// A call arrived on this connection: its handshake is complete.
    pub(crate) fn called(&self) {
        self.called.store(true, Ordering::Release);
    }
}

impl Connected for LimitedIo {
    type ConnectInfo = ConnectInfo;

    fn connect_info(&self) -> ConnectInfo {
        let called = match &self.watch {
            Watch::FirstCall { called, .. } => called.clone(),
            Watch::Request { .. } => Arc::new(AtomicBool::new(true)),
        };
        ConnectInfo { tcp: self.stream.connect_info(), called }
    }
}
