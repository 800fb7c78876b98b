//! The handlers of the HTTP API. Each authenticates first (a refused request never reaches
//! the store's records or a source), checks the caller's role, and describes itself in an
//! audit [`Note`]. Errors are JSON: `{"error": "...", "hint": "..."}`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::audit::{cut, Note};
use super::auth::{hash_token, well_formed, Role};
use super::AppState;
use crate::model::{Key, KeyValue};
use crate::request::{Request, RequestErrorKind};
use crate::runtime::FetchRequest;
use crate::store::{IndexKey, RunId, Timestamp};

pub(super) type St = State<Arc<AppState>>;

/// The caller a valid token stands for.
pub(crate) struct Caller {
    pub name: String,
    pub role: Role,
}

/// A JSON answer with its audit note.
pub(super) fn answer(status: StatusCode, body: Value, note: Note) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.extensions_mut().insert(note);
    resp
}

pub(super) fn error(
    status: StatusCode,
    message: impl Into<String>,
    hint: Option<&str>,
    note: Note,
) -> Response {
    let mut body = json!({ "error": message.into() });
    if let Some(h) = hint {
        body["hint"] = json!(h);
    }
    answer(status, body, note)
}

pub(super) fn store_error(e: crate::store::StoreError, note: Note) -> Response {
    tracing::error!(error = %e, "store error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the warehouse could not answer",
        Some("try again; the server's log has the cause"),
        note,
    )
}

/// Checks the bearer token and the rate limit. `Err` is the response to send.
pub(super) async fn authenticate(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    note: &mut Note,
) -> Result<Caller, Box<Response>> {
    check_token(state, headers, note).await.map_err(Box::new)
}

/// 401 with what to send, and `WWW-Authenticate: Bearer`.
fn unauthorized(message: &str, note: &Note) -> Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        message,
        Some("send `Authorization: Bearer kye_...` with a token from `token create`"),
        note.clone(),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[allow(clippy::result_large_err)] // boxed once, by `authenticate`
async fn check_token(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    note: &mut Note,
) -> Result<Caller, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("no token", note));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| well_formed(t));
    let Some(token) = token else {
        return Err(unauthorized("malformed token", note));
    };
    caller_of_hash(state, hash_token(token), note).await
}

/// The caller whose token has SHA-256 `hash` (the bearer token's, or a catalog session's):
/// unknown, revoked and expired tokens are 401, a role kye.toml lacks 403, a token over its
/// rate limit 429. `Err` is the JSON response to send.
#[allow(clippy::result_large_err)] // boxed by `authenticate`; the catalog reads its status
pub(crate) async fn caller_of_hash(
    state: &Arc<AppState>,
    hash: String,
    note: &mut Note,
) -> Result<Caller, Response> {
    let found = match state.token_by_hash(hash).await {
        Ok(found) => found,
        Err(e) => return Err(store_error(e, note.clone())),
    };
    let Some(record) = found else {
        return Err(unauthorized("unknown token", note));
    };
    note.token = Some(record.name.clone());
    let now = Timestamp::now();
    if let Some(at) = record.revoked {
        return Err(unauthorized(
            &format!("token {} was revoked at {at}", record.name),
            note,
        ));
    }
    if let Some(at) = record.expires.filter(|e| *e <= now) {
        return Err(unauthorized(
            &format!("token {} expired at {at}", record.name),
            note,
        ));
    }
    let Some(role) = state.roles.get(&record.role) else {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "token {}'s role {:?} is not defined in kye.toml",
                record.name, record.role
            ),
            Some("ask an admin to define the role ([roles.NAME]) or issue a token of another role"),
            note.clone(),
        ));
    };
    if let Err(wait) = state.limiter.take(&record.name) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("token {} is over its rate limit", record.name),
            Some("wait for Retry-After seconds"),
            note.clone(),
        );
        super::limit::retry_after(&mut r, wait);
        return Err(r);
    }
    Ok(Caller {
        name: record.name,
        role: role.clone(),
    })
}

pub(super) fn forbidden(what: &str, note: Note) -> Response {
    error(
        StatusCode::FORBIDDEN,
        what,
        Some("ask an admin for a role that allows it ([roles.NAME] in kye.toml)"),
        note,
    )
}

pub(crate) async fn health() -> Response {
    answer(StatusCode::OK, json!({"status": "ok"}), Note::new("health"))
}

pub(crate) async fn openapi() -> Response {
    answer(
        StatusCode::OK,
        super::openapi::document(),
        Note::new("openapi"),
    )
}

pub(crate) async fn no_route() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route",
        Some("GET /openapi.json lists the API"),
        Note::new("no_route"),
    )
}

pub(crate) async fn no_method() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
        Some("GET /openapi.json lists the API"),
        Note::new("no_route"),
    )
}

/// `GET /v1/models`: the models the caller may read, with what else it may do with each.
pub(crate) async fn models(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("models");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let models: Vec<Value> = state
        .runtime
        .registry()
        .models()
        .filter(|m| caller.role.read.allows(m.name()))
        .map(|m| {
            json!({
                "name": m.name(),
                "read": true,
                "fetch": caller.role.fetch.allows(m.name()),
                "backfill": caller.role.backfill.allows(m.name()),
            })
        })
        .collect();
    answer(StatusCode::OK, json!({ "models": models }), note)
}

/// `GET /v1/registry`: models and fetchers linked into the server (for any valid token).
pub(crate) async fn registry(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("registry");
    if let Err(r) = authenticate(&state, &headers, &mut note).await {
        return *r;
    }
    let listing = crate::listing::Listing::new(state.runtime.registry());
    match serde_json::from_str::<Value>(&listing.to_json()) {
        Ok(v) => answer(StatusCode::OK, v, note),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), None, note),
    }
}

/// A key from query parameters: each value an integer when it reads as one and the index
/// takes one, else a string. Returns the request to fetch it by (`None` when no fetcher
/// serves that index: the key can still be read from the store) and the store keys to look
/// for, in order. `Err` is a 4xx answer.
pub(crate) fn resolve_key(
    state: &AppState,
    model: &str,
    params: &[(String, String)],
    note: &Note,
) -> Result<(Option<Request>, Vec<IndexKey>), Box<Response>> {
    key_of(state, model, params, note).map_err(Box::new)
}

#[allow(clippy::result_large_err)] // boxed once, by `resolve_key`
fn key_of(
    state: &AppState,
    model: &str,
    params: &[(String, String)],
    note: &Note,
) -> Result<(Option<Request>, Vec<IndexKey>), Response> {
    if params.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("name a key of {model}: ?EDGE=VALUE (e.g. ?id=25)"),
            None,
            note.clone(),
        ));
    }
    let edges: Vec<&str> = params.iter().map(|(e, _)| e.as_str()).collect();
    let typed: Vec<KeyValue> = params
        .iter()
        .map(|(_, v)| match v.parse::<i64>() {
            Ok(i) => KeyValue::Int(i),
            Err(_) => KeyValue::String(v.clone()),
        })
        .collect();
    let strings: Vec<KeyValue> = params
        .iter()
        .map(|(_, v)| KeyValue::String(v.clone()))
        .collect();
    let registry = state.runtime.registry();
    let mut errors = Vec::new();
    let mut unfetchable = Vec::new();
    for values in [typed, strings] {
        let request = Request::one(model, &edges, Key::new(values));
        match registry.resolve(&request) {
            Ok(resolved) => {
                let index = IndexKey::new(
                    resolved.fetcher().identifier.iter().copied(),
                    request_values(&request),
                );
                return Ok((Some(request), vec![index]));
            }
            Err(e) if e.kind() == RequestErrorKind::NoFetcher => {
                let index = IndexKey::new(edges.iter().copied(), request_values(&request));
                if !unfetchable.contains(&index) {
                    unfetchable.push(index);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !unfetchable.is_empty() {
        return Ok((None, unfetchable));
    }
    let Some(e) = errors.pop() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "no such key",
            None,
            note.clone(),
        ));
    };
    let status = match e.kind() {
        RequestErrorKind::UnknownModel => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    Err(error(
        status,
        cut(&e.to_string(), 2000),
        e.help_text(),
        note.clone(),
    ))
}

fn request_values(request: &Request) -> Vec<Value> {
    match request.keys() {
        crate::request::KeySpec::One(k) => k.values().iter().map(KeyValue::to_json).collect(),
        _ => Vec::new(),
    }
}

/// The model a request text names, if it parses.
pub(crate) fn model_of(request: &str) -> Option<String> {
    Request::parse(request).ok().map(|r| r.model().to_string())
}

fn limit_param(params: &[(String, String)], default: usize) -> usize {
    params
        .iter()
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, 1000)
}

/// `GET /v1/runs?limit=N`: runs of models the caller may read, newest first.
pub(crate) async fn runs(
    State(state): St,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("runs.list");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let params = query.map(|q| q.0).unwrap_or_default();
    let limit = limit_param(&params, 50);
    match state
        .with_reader(move |r| r.runs(Some(limit.saturating_mul(4))))
        .await
    {
        Ok(runs) => {
            let runs: Vec<_> = runs
                .into_iter()
                .filter(|r| model_of(&r.request).is_some_and(|m| caller.role.read.allows(&m)))
                .take(limit)
                .collect();
            answer(StatusCode::OK, json!({ "runs": runs }), note)
        }
        Err(e) => store_error(e, note),
    }
}

/// `GET /v1/runs/{id}`: one run with its progress (key outcomes counted so far).
pub(crate) async fn run(
    State(state): St,
    id: Result<Path<i64>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("runs.get");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(Path(id)) = id else {
        return error(StatusCode::BAD_REQUEST, "a run id is a number", None, note);
    };
    note.key = Some(id.to_string());
    let found = state
        .with_reader(move |r| {
            let Some(run) = r.run(RunId(id))? else {
                return Ok(None);
            };
            let progress = r.outcome_counts(RunId(id))?;
            Ok(Some((run, progress)))
        })
        .await;
    match found {
        Ok(Some((run, progress)))
            if model_of(&run.request).is_some_and(|m| caller.role.read.allows(&m)) =>
        {
            note.model = model_of(&run.request);
            let mut body = json!({"run": run, "progress": progress});
            if let Some(queued) = queued_progress(&state, RunId(id)).await {
                body["queue"] = queued;
            }
            answer(StatusCode::OK, body, note)
        }
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            format!("no run {id} that token {} may read", caller.name),
            None,
            note,
        ),
        Err(e) => store_error(e, note),
    }
}

/// A queued run's batches and workers (their rates and lease expiries), when the server
/// watches the store's queue and `run` is queued there.
#[cfg(feature = "postgres")]
async fn queued_progress(state: &Arc<AppState>, run: RunId) -> Option<Value> {
    let queue = state.queue.get()?.clone();
    match tokio::task::spawn_blocking(move || queue.progress(run)).await {
        Ok(Ok(Some(p))) => serde_json::to_value(p).ok(),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::warn!(run = %run, error = %e, "cannot read the queue's progress");
            None
        }
        Err(_) => None,
    }
}

#[cfg(not(feature = "postgres"))]
async fn queued_progress(_state: &Arc<AppState>, _run: RunId) -> Option<Value> {
    None
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    request: String,
    #[serde(default)]
    follow: Option<Value>,
}

/// `POST /v1/runs {"request": "Pokemon.id in 1..=151", "follow": true}`: a backfill in the
/// background; 202 with its id.
pub(crate) async fn start_run(State(state): St, headers: HeaderMap, body: Bytes) -> Response {
    let mut note = Note::new("runs.start");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let start: StartRun = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a run: {e}"),
                Some(r#"send {"request": "Model.edge in 1..=10", "follow": true}"#),
                note,
            )
        }
    };
    let follow = match &start.follow {
        None | Some(Value::Bool(false)) => 0,
        Some(Value::Bool(true)) => 1,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|d| d <= 16) => {
            n.as_u64().unwrap_or(0) as u32
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "follow is true, false or a depth from 0 to 16",
                None,
                note,
            )
        }
    };
    let resolved = match state.runtime.registry().resolve_str(&start.request) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                cut(&e.to_string(), 2000),
                e.help_text(),
                note,
            )
        }
    };
    let model = resolved.model().name().to_string();
    note.model = Some(model.clone());
    note.key = Some(cut(&start.request, 500));
    if !caller.role.backfill.allows(&model) {
        return forbidden(
            &format!("token {} may not backfill {model}", caller.name),
            note,
        );
    }
    // Following references fetches and stores the models they lead to, with the server's
    // credentials: each must be one the caller may backfill too.
    if let Some(other) = followed_models(state.runtime.registry(), &model, follow)
        .into_iter()
        .find(|m| !caller.role.backfill.allows(m))
    {
        return forbidden(
            &format!(
                "token {} may not backfill {other}, which following {model}'s references \
                 {follow} level(s) deep would fetch",
                caller.name
            ),
            note,
        );
    }
    match spawn_backfill(&state, start.request.clone(), follow).await {
        Ok(id) => answer(
            StatusCode::ACCEPTED,
            json!({"id": id, "status": "running", "request": start.request, "follow": follow}),
            note,
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e, None, note),
    }
}

/// Starts the backfill `request` (resolved and allowed by the caller) in the background and
/// returns its run id once the run is recorded; `Err` says why it did not start. The API's
/// `POST /v1/runs` and the catalog's backfill form share it.
pub(crate) async fn spawn_backfill(
    state: &Arc<AppState>,
    request: String,
    follow: u32,
) -> Result<RunId, String> {
    let (tx, rx) = tokio::sync::oneshot::channel::<RunId>();
    let tx = Mutex::new(Some(tx));
    let request = FetchRequest::new(request)
        .follow(follow)
        .on_start(move |id| {
            if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(id);
            }
        });
    let runtime = state.runtime.clone();
    let (err_tx, err_rx) = tokio::sync::oneshot::channel::<String>();
    let handle = tokio::spawn(async move {
        match runtime.fetch(request).await {
            Ok(summary) => tracing::info!(run = %summary.run, "backfill ended"),
            Err(e) => {
                tracing::warn!(error = %e, "backfill failed");
                let _ = err_tx.send(e.to_string());
            }
        }
    });
    {
        let mut running = state.backfills.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|h| !h.is_finished());
        running.push(handle);
    }
    tokio::select! {
        Ok(id) = rx => Ok(id),
        Ok(e) = err_rx => Err(format!("the backfill did not start: {}", cut(&e, 1000))),
        else => Err("the backfill did not start".to_string()),
    }
}

/// `GET /v1/rejects?limit=N`: quarantined payloads of models the caller may read.
pub(crate) async fn rejects(
    State(state): St,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("rejects");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let limit = limit_param(&query.map(|q| q.0).unwrap_or_default(), 50);
    match state
        .with_reader(move |r| r.rejects(None, Some(limit.saturating_mul(4))))
        .await
    {
        Ok(rows) => {
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| caller.role.read.allows(&r.model))
                .take(limit)
                .collect();
            answer(StatusCode::OK, json!({ "rejects": rows }), note)
        }
        Err(e) => store_error(e, note),
    }
}

/// `GET /v1/drift`: unknown fields of models the caller may read.
pub(crate) async fn drift(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("drift");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match state.with_reader(|r| r.drift()).await {
        Ok(rows) => {
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|d| caller.role.read.allows(&d.model))
                .collect();
            answer(StatusCode::OK, json!({ "drift": rows }), note)
        }
        Err(e) => store_error(e, note),
    }
}

/// `GET /v1/audit?limit=N` (admin): the newest audit rows.
pub(crate) async fn audit(
    State(state): St,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("audit");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if !caller.role.may_admin("audit") {
        return forbidden(
            &format!("token {} may not read the audit log", caller.name),
            note,
        );
    }
    let limit = limit_param(&query.map(|q| q.0).unwrap_or_default(), 100);
    if let Some(sink) = state.audit_sink() {
        sink.flush().await;
    }
    match state.with_store(move |s| s.audit(limit)).await {
        Ok(rows) => answer(StatusCode::OK, json!({ "audit": rows }), note),
        Err(e) => store_error(e, note),
    }
}

/// `GET /v1/freshness`: per readable model with a `[freshness]` policy, keys fresh and stale,
/// the oldest, the next background refresh and whether it is past its thresholds.
pub(crate) async fn freshness(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("freshness");
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let next = *state.next_refresh.lock().unwrap_or_else(|p| p.into_inner());
    let mut models = Vec::new();
    for policy in state
        .freshness
        .iter()
        .filter(|p| caller.role.read.allows(&p.model))
    {
        match super::fresh::scan(&state, policy, false).await {
            Ok(scan) => models.push(super::fresh::report(policy, &scan, next)),
            Err(e) => {
                tracing::error!(error = %e, "freshness scan failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the warehouse could not answer",
                    Some("try again; the server's log has the cause"),
                    note,
                );
            }
        }
    }
    answer(StatusCode::OK, json!({ "models": models }), note)
}

/// The registered models a run of `model` following references `depth` levels deep may fetch
/// besides `model` itself (references of every edge, level by level).
fn followed_models(registry: &crate::Registry, model: &str, depth: u32) -> Vec<String> {
    let mut seen: Vec<String> = vec![model.to_string()];
    let mut level: Vec<String> = vec![model.to_string()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for m in &level {
            let Some(def) = registry.model(m).map(|r| r.definition()) else {
                continue;
            };
            for edge in &def.edges {
                if let kye_lang::Type::Model(target) = &edge.ty {
                    if registry.model(target).is_some() && !seen.contains(target) {
                        seen.push(target.clone());
                        next.push(target.clone());
                    }
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    seen.remove(0);
    seen
}

#[cfg(test)]
mod follow_tests {
    use super::followed_models;
    use crate::{RegisteredModel, Registry};

    #[test]
    fn a_backfill_following_references_reaches_the_models_they_lead_to_level_by_level() {
        let schema: &'static kye_lang::Schema = Box::leak(Box::new(
            kye_lang::compile_str(
                "follow.kye",
                "Pokemon(id: Number) {\n  types: PokemonType+\n}\n\
                 PokemonType(name) {\n  name: String\n  moves: Move*\n}\n\
                 Move(name) {\n  name: String\n}\n",
            )
            .expect("schema compiles"),
        ));
        let registry = Registry::from_parts(
            ["Pokemon", "PokemonType", "Move"]
                .map(|m| RegisteredModel::new(schema, m).expect("model")),
            [],
        )
        .expect("registry");
        assert!(followed_models(&registry, "Pokemon", 0).is_empty());
        assert_eq!(followed_models(&registry, "Pokemon", 1), ["PokemonType"]);
        assert_eq!(
            followed_models(&registry, "Pokemon", 2),
            ["PokemonType", "Move"]
        );
        assert_eq!(
            followed_models(&registry, "Pokemon", 16),
            ["PokemonType", "Move"]
        );
        assert!(followed_models(&registry, "Move", 3).is_empty());
    }
}
