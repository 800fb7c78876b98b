//! The listening socket: connections accepted up to a cap, each served by hyper's HTTP/1.1
//! with a timer, so a client that trickles its request headers, holds a kept-alive
//! connection open without asking anything, or stops reading its answers, is cut off after
//! `[serve] header_timeout`.
//!
//! `axum::serve` gives hyper no timer (no header-read timeout, no idle timeout) and accepts
//! without limit; this loop is the small part of it kye needs, with both. At the cap the loop
//! stops accepting until a connection ends: new clients wait in the kernel's backlog rather
//! than being refused, and a client that trickles holds its slot for one timeout at most.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// What bounds the connections of one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// The longest a client may take to send a request's headers, counted from the moment the
    /// connection waits for a request (so also the idle time of a kept-alive connection), and
    /// the longest an answer may wait for the client to read it.
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting, asks every open
/// connection to finish the request it is on and close, and returns once all have closed or
/// `grace` has passed (those still open are then dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max));
    let (closing_tx, closing) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut full_logged = false;
    let mut open = tokio::task::JoinSet::new();
    loop {
        // Connections that ended are reaped as the loop goes.
        while open.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !full_logged {
                    tracing::warn!(
                        max_connections = max,
                        "connection cap reached: new connections wait until one closes"
                    );
                    full_logged = true;
                }
                tokio::select! {
                    _ = turned_true(&mut stop) => break,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        if permits.available_permits() > max / 2 {
            full_logged = false;
        }
        let accepted = tokio::select! {
            _ = turned_true(&mut stop) => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // A connection that went away before it was accepted is nothing; running out
                // of file descriptors passes once connections close: wait a little.
                if !is_connection_error(&e) {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        open.spawn(connection(
            tcp,
            peer,
            app.clone(),
            http.clone(),
            limits.header_timeout,
            closing.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a permit until it closes: all of them back means all closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = max - permits.available_permits(),
            "grace period over: connections still open are dropped"
        );
    }
    open.abort_all();
    while open.join_next().await.is_some() {}
}

/// One connection: requests served in turn (the peer's address handed to handlers as
/// [`ConnectInfo`]) until the client closes, a timeout cuts it, or the server stops.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    write_limit: Duration,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, req).await }
    });
    let conn = http.serve_connection(TokioIo::new(WriteDeadline::new(tcp, write_limit)), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = turned_true(&mut closing) => {
            // The request in flight (if any) is answered, then the connection closes.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            tracing::debug!(%peer, "connection closed: no complete request headers in time");
        } else {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// A connection whose writes fail once one has waited `limit` for the client to take bytes
/// (a client that asks and never reads would otherwise hold its connection, and its slot
/// under the cap, forever).
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write answered `Pending`: still waiting, or past the limit.
    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client has not read its answer in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<R>(&mut self, r: std::io::Result<R>) -> Poll<std::io::Result<R>> {
        self.stalled = None;
        Poll::Ready(r)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.waiting(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.waiting(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Waits until `rx` holds `true` (or its sender is gone).
async fn turned_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Errors of one connection that `accept` reports and that say nothing of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
