//! Every request answered is recorded in the audit log (`_kye_audit`): when, which token,
//! what action, model, key, whether the record came from the store or the source, and the
//! status. Handlers describe their request in a [`Note`] on the response; this middleware
//! hands it to the [`Sink`] (after the limits on the request target and headers), and logs one
//! structured line per request through `tracing`. `GET /health` is not recorded (load
//! balancers ask it every few seconds), nor are the catalog's assets and the runs page's
//! once-a-second poll of `/runs.json`.
//!
//! The sink writes rows in batches on a task of its own (one transaction per batch of up to
//! 256 rows or 50 ms, not one per request); reading the log (`GET /v1/audit`) flushes it
//! first, and a stopping server writes what is queued before it exits. A process killed with
//! `kill -9` loses the rows of the last 50 ms or so, not more.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tokio::sync::{mpsc, oneshot};

use super::AppState;
use crate::store::{AuditEntry, ServerStore, Timestamp};

/// Rows written per transaction, at most.
const BATCH: usize = 256;

/// How long the writer waits for more rows after the first of a batch. Each commit makes the
/// store's other connections (token lookups, record reads) drop their page caches, so a busy
/// server committing at every request's row would read its indexes from the file again on
/// every request; a short wait turns thousands of commits a second into a few dozen. It is
/// also the most a `kill -9` can lose (a flush, e.g. `GET /v1/audit`, does not wait).
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

enum Msg {
    Row(AuditEntry),
    Flush(oneshot::Sender<()>),
}

/// Where audit rows go: a queue drained by a writer task.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl Sink {
    /// A sink and the writer task's future (spawn it; it ends when every sink is dropped,
    /// after writing what was queued).
    pub(crate) fn new(
        store: std::sync::Arc<std::sync::Mutex<Box<dyn ServerStore>>>,
    ) -> (Sink, impl std::future::Future<Output = ()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let writer = async move {
            while let Some(first) = rx.recv().await {
                let mut rows = Vec::new();
                let mut flushes = Vec::new();
                let until = tokio::time::Instant::now() + LINGER;
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        Msg::Row(r) => rows.push(r),
                        Msg::Flush(done) => flushes.push(done),
                    }
                    if rows.len() >= BATCH {
                        break;
                    }
                    next = match rx.try_recv() {
                        Ok(m) => Some(m),
                        // Nothing queued: wait for more until the linger is over, unless a
                        // flush is waiting or the sinks are gone.
                        Err(mpsc::error::TryRecvError::Empty) if flushes.is_empty() => {
                            tokio::time::timeout_at(until, rx.recv())
                                .await
                                .ok()
                                .flatten()
                        }
                        Err(_) => None,
                    };
                }
                if !rows.is_empty() {
                    let store = store.clone();
                    let written = tokio::task::spawn_blocking(move || {
                        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
                        s.append_audit(&rows)
                    })
                    .await;
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit log"),
                        Err(e) => tracing::error!(error = %e, "cannot write the audit log"),
                    }
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        };
        (Sink { tx }, writer)
    }

    fn push(&self, row: AuditEntry) {
        if self.tx.send(Msg::Row(row)).is_err() {
            tracing::error!("the audit writer has stopped; a row is lost");
        }
    }

    /// Waits until every row queued before this call is written.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Audit rows deleted per chunk when the log is pruned: the store's lock (which token checks
/// also take) is held for one chunk at a time.
const PRUNE_CHUNK: usize = 2_000;

/// Deletes the audit rows older than `keep`: now, then every hour (`[serve] audit_retention`).
pub(crate) async fn pruner(state: Arc<AppState>, keep: std::time::Duration) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let before =
            Timestamp::from_unix_millis(Timestamp::now().unix_millis().saturating_sub(keep_ms));
        let mut total = 0u64;
        loop {
            let store = state.store.clone();
            let pruned = tokio::task::spawn_blocking(move || {
                store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .prune_audit(before, PRUNE_CHUNK)
            })
            .await;
            match pruned {
                Ok(Ok(n)) => {
                    total += n;
                    if n < PRUNE_CHUNK as u64 {
                        break;
                    }
                    // Requests waiting for the store go first.
                    tokio::task::yield_now().await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot prune the audit log");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune the audit log");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(rows = total, before = %before, "audit rows past their retention deleted");
        }
    }
}

/// The request-header bytes accepted (names and values together).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What a handler says about its request, for the audit log.
#[derive(Debug, Clone, Default)]
pub(crate) struct Note {
    pub token: Option<String>,
    pub action: &'static str,
    pub model: Option<String>,
    pub key: Option<String>,
    pub source: Option<&'static str>,
}

impl Note {
    pub(crate) fn new(action: &'static str) -> Note {
        Note {
            action,
            ..Note::default()
        }
    }
}

/// Text cut to `max` characters, for log lines and audit rows of hostile requests.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

pub(crate) async fn middleware(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = cut(req.uri().path(), 200);
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    // An address that has had too many tokens refused is refused before any is looked at.
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| client_of(c.0.ip()));
    // Only a token that was presented and refused counts (a request without one, e.g. a
    // poller behind the same NAT, does not lock its neighbours out).
    let presents_token = req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
        || (req.method() == axum::http::Method::POST && req.uri().path() == "/login");
    let locked_out = peer
        .as_deref()
        .and_then(|p| state.failed_auth.check(p).err());
    let resp = if let Some(wait) = locked_out {
        let mut r = refused(
            StatusCode::TOO_MANY_REQUESTS,
            "too many refused tokens from this address; wait for Retry-After seconds",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.max(1).to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        r
    } else if target_len > state.options.max_target {
        refused(
            StatusCode::URI_TOO_LONG,
            &format!(
                "the request target is {target_len} bytes; at most {} are accepted",
                state.options.max_target
            ),
        )
    } else if header_bytes > MAX_HEADER_BYTES {
        refused(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("the request headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"),
        )
    } else {
        next.run(req).await
    };
    let mut resp = resp;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was not read: the connection cannot carry another request. Say so, or a
        // client reusing it sends its next request into a closing socket.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    if resp.status() == StatusCode::UNAUTHORIZED && presents_token {
        if let Some(p) = peer.as_deref() {
            let _ = state.failed_auth.take(p);
        }
    }
    let status = resp.status().as_u16();
    let note = resp
        .extensions()
        .get::<Note>()
        .cloned()
        .unwrap_or_else(|| Note::new("refused"));
    tracing::info!(
        method = %method,
        path = %path,
        status,
        token = note.token.as_deref().unwrap_or("-"),
        action = note.action,
        source = note.source.unwrap_or("-"),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    // Not rows: liveness probes, the catalog's stylesheet and script, and the runs page's
    // poll every second (each still a log line above).
    if !matches!(note.action, "health" | "catalog.asset" | "catalog.poll") {
        let entry = AuditEntry {
            time: Timestamp::now(),
            token: note.token,
            action: note.action.to_string(),
            model: note.model.map(|m| cut(&m, 200)),
            key: note.key.map(|k| cut(&k, 500)),
            source: note.source.map(str::to_string),
            status,
        };
        if let Some(sink) = state.audit_sink() {
            sink.push(entry);
        }
    }
    resp
}

/// The client a refused token is counted against: its IPv4 address, or the /64 network of
/// its IPv6 address (one host usually has a whole /64 to pick addresses from).
fn client_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    resp.extensions_mut().insert(Note::new("refused"));
    resp
}

#[cfg(test)]
mod tests {
    use super::client_of;

    #[test]
    fn refused_tokens_count_per_ipv4_address_and_per_ipv6_network() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(client_of(ip("10.1.2.3")), "10.1.2.3");
        assert_eq!(client_of(ip("::ffff:10.1.2.3")), "10.1.2.3");
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa::1")),
            client_of(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
    }
}
