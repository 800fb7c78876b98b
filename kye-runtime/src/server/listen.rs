//! The listening socket: connections accepted up to a cap, each served by hyper's HTTP/1.1
//! with a timer, so a client that trickles its request headers, or holds a kept-alive
//! connection open without asking anything, is cut off after `[serve] header_timeout`.
//!
//! `axum::serve` gives hyper no timer (no header-read timeout, no idle timeout) and accepts
//! without limit; this loop is the small part of it kye needs, with both. At the cap the loop
//! stops accepting until a connection ends: new clients wait in the kernel's backlog rather
//! than being refused, and a client that trickles holds its slot for one timeout at most.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// What bounds the connections of one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections served at once; more wait in the backlog.
    pub max_connections: usize,
    /// The longest a client may take to send a request's headers, counted from the moment the
    /// connection waits for a request (so also the idle time of a kept-alive connection).
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
    loop {
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
        tokio::spawn(connection(
            tcp,
            peer,
            app.clone(),
            http.clone(),
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
}

/// One connection: requests served in turn (the peer's address handed to handlers as
/// [`ConnectInfo`]) until the client closes, a timeout cuts it, or the server stops.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, req).await }
    });
    let conn = http.serve_connection(TokioIo::new(tcp), service);
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
