//! Every request answered is recorded in the audit log (`_kye_audit`): when, which token,
//! what action, model, key, whether the record came from the store or the source, and the
//! status. Handlers describe their request in a [`Note`] on the response; this middleware
//! writes it (after the limits on the request target and headers), and logs one structured
//! line per request through `tracing`. `GET /health` is not recorded (load balancers ask it
//! every few seconds).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::store::{AuditEntry, Timestamp};

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
    let resp = if target_len > state.options.max_target {
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
    if note.action != "health" {
        let entry = AuditEntry {
            time: Timestamp::now(),
            token: note.token,
            action: note.action.to_string(),
            model: note.model.map(|m| cut(&m, 200)),
            key: note.key.map(|k| cut(&k, 500)),
            source: note.source.map(str::to_string),
            status,
        };
        if let Err(e) = state
            .with_store(move |s| s.append_audit(std::slice::from_ref(&entry)))
            .await
        {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
    resp
}

fn refused(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    resp.extensions_mut().insert(Note::new("refused"));
    resp
}
