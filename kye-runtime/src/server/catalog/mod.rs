//! The catalog: web pages over the registry and the warehouse at `/` (issue 16), served by
//! `kye serve` beside the JSON API with the same tokens and roles.
//!
//! One role a file: `mod.rs` (routes, sessions, the signed-in viewer, assets, login and the
//! action forms), `html.rs` (escaping and the page shell), `pages.rs` (models, records, runs,
//! rejects, drift) and `lineage.rs` (the SVG graph). Pages are HTML built with plain Rust
//! and read without JavaScript; `catalog.js` only updates running runs in place.
//!
//! Sessions: the login form takes a token; the server keeps `SHA-256(session id) → token
//! hash` in the store (`_kye_sessions`, so sessions survive a restart and hold on every
//! server of one warehouse) and sets the id as an `HttpOnly; SameSite=Strict` cookie
//! (`Secure` when the request came through an https proxy that says so with
//! `X-Forwarded-Proto: https`). Every page looks the token up again, so a session ends when
//! its token is revoked or expires, at logout, or after [`SESSION_LIFETIME`]. Forms that
//! change something carry the session's CSRF token.

mod html;
mod lineage;
mod pages;
mod sources;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::api::{caller_of_hash, Caller};
use super::audit::Note;
use super::auth::{hash_token, well_formed};
use super::AppState;
use crate::store::{SessionRecord, Timestamp};
use html::{esc, layout};

/// How long a session lasts at most (the token's own expiry ends it sooner).
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const COOKIE: &str = "kye_session";

/// The strict policy every catalog answer carries: only kye's own stylesheet, script and
/// images; no frames, no plugins, forms post only back to kye.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("catalog.css");
const JS: &str = include_str!("catalog.js");

/// The catalog's sessions, kept in the store beside the tokens (`_kye_sessions`, only the
/// SHA-256 of each cookie): a restart signs no one out, and every server of one warehouse
/// knows every session.
pub(crate) struct Sessions;

impl Sessions {
    /// Opens a session for the token whose hash is `token_hash`: the cookie's value and the
    /// session's CSRF token.
    async fn open(
        state: &Arc<AppState>,
        token_hash: String,
    ) -> crate::error::Result<(String, String)> {
        let id = super::auth::new_token()?;
        let csrf = super::auth::new_token()?;
        let now = Timestamp::now();
        let lifetime = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        let record = SessionRecord {
            id_hash: hash_token(&id),
            token_hash,
            csrf: csrf.clone(),
            expires: Timestamp::from_unix_millis(now.unix_millis().saturating_add(lifetime)),
        };
        state
            .with_store(move |s| s.open_session(&record, now))
            .await
            .map_err(crate::error::Error::other)?;
        Ok((id, csrf))
    }

    /// The token hash and CSRF token of the open session whose cookie is `id`.
    async fn get(
        state: &Arc<AppState>,
        id: &str,
    ) -> Result<Option<(String, String)>, crate::store::StoreError> {
        let id_hash = hash_token(id);
        let found = state
            .with_store(move |s| s.session(&id_hash, Timestamp::now()))
            .await?;
        Ok(found.map(|s| (s.token_hash, s.csrf)))
    }

    async fn close(state: &Arc<AppState>, id: &str) {
        let id_hash = hash_token(id);
        if let Err(e) = state.with_store(move |s| s.close_session(&id_hash)).await {
            tracing::warn!(error = %e, "cannot end a catalog session");
        }
    }
}

/// The signed-in caller of a page.
pub(crate) struct Viewer {
    pub caller: Caller,
    pub csrf: String,
    session: String,
}

impl Viewer {
    /// The page shell with this viewer's name and logout form.
    pub(crate) fn page(&self, title: &str, current: &str, body: &str) -> String {
        layout(title, current, Some((&self.caller.name, &self.csrf)), body)
    }

    /// Whether the role may read `model` (the catalog shows nothing else of it).
    pub(crate) fn reads(&self, model: &str) -> bool {
        self.caller.role.read.allows(model)
    }
}

/// The catalog's routes, merged into the server's router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::models))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/lineage", get(pages::lineage))
        .route("/models/{model}/records", get(pages::records))
        .route("/models/{model}/record", get(pages::record))
        .route("/runs", get(pages::runs))
        .route("/runs.json", get(pages::runs_json))
        .route("/rejects", get(pages::rejects))
        .route("/drift", get(pages::drift))
        .route("/actions/fetch", post(fetch_action))
        .route("/actions/backfill", post(backfill_action))
        .route("/assets/catalog.css", get(css))
        .route("/assets/catalog.js", get(js))
}

/// Headers every catalog answer carries.
fn secure(mut resp: Response, note: Note) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.extensions_mut().insert(note);
    resp
}

/// An HTML answer.
pub(crate) fn html(status: StatusCode, page: String, note: Note) -> Response {
    let resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    secure(resp, note)
}

/// A JSON answer for the page's script.
pub(crate) fn json(body: serde_json::Value, note: Note) -> Response {
    secure((StatusCode::OK, axum::Json(body)).into_response(), note)
}

/// A page saying what went wrong (`message` is escaped here).
pub(crate) fn problem(
    status: StatusCode,
    viewer: Option<&Viewer>,
    message: &str,
    note: Note,
) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        r#"<p class="error" role="alert">{}</p><p><a href="/">Back to the models</a></p>"#,
        esc(message)
    );
    let page = match viewer {
        Some(v) => v.page(title, "", &body),
        None => layout(title, "", None, &body),
    };
    html(status, page, note)
}

fn redirect(to: &str, note: Note) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure(resp, note)
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| well_formed(v))
}

/// The signed-in viewer of a request, or the answer to send: to the login page without a
/// live session (a revoked or expired token ends it), an error page for a role kye.toml
/// lacks or a token over its rate limit.
pub(crate) async fn viewer(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    note: &mut Note,
) -> Result<Viewer, Box<Response>> {
    let Some(id) = session_id(headers) else {
        return Err(Box::new(redirect("/login", note.clone())));
    };
    let (hash, csrf) = match Sessions::get(state, &id).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(Box::new(redirect("/login", note.clone()))),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the catalog's sessions");
            return Err(Box::new(problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "the warehouse could not answer; the server's log has the cause",
                note.clone(),
            )));
        }
    };
    match caller_of_hash(state, hash, note).await {
        Ok(caller) => Ok(Viewer {
            caller,
            csrf,
            session: id,
        }),
        Err(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
            Sessions::close(state, &id).await;
            Err(Box::new(redirect("/login?ended=1", note.clone())))
        }
        Err(resp) => {
            let status = resp.status();
            let message = match status {
                StatusCode::TOO_MANY_REQUESTS => "this token is over its rate limit; wait a minute",
                StatusCode::FORBIDDEN => {
                    "this token's role is not defined in kye.toml; ask an admin"
                }
                _ => "the warehouse could not answer; the server's log has the cause",
            };
            Err(Box::new(problem(status, None, message, note.clone())))
        }
    }
}

/// Form fields of an `application/x-www-form-urlencoded` body (repeated names: the last).
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn login_page(message: Option<&str>) -> String {
    let alert = message
        .map(|m| format!(r#"<p class="error" role="alert">{}</p>"#, esc(m)))
        .unwrap_or_default();
    layout(
        "Sign in",
        "",
        None,
        &format!(
            r#"{alert}<form method="post" action="/login" class="login">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus placeholder="kye_…">
<button type="submit">Sign in</button>
</form>
<p class="hint">A token from <code>kye token create NAME --role ROLE</code>. The catalog shows what the token's role may read.</p>"#
        ),
    )
}

async fn login_form(uri: axum::http::Uri) -> Response {
    let note = Note::new("catalog.login");
    let ended = uri.query().is_some_and(|q| q.contains("ended=1"));
    let message =
        ended.then_some("your session ended (the token was revoked or expired); sign in again");
    html(StatusCode::OK, login_page(message), note)
}

async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut note = Note::new("catalog.login");
    let fields = form(&body);
    let token = fields.get("token").map(|t| t.trim()).unwrap_or("");
    if !well_formed(token) {
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(Some("that is not a kye token (kye_ and 64 hex digits)")),
            note,
        );
    }
    let hash = hash_token(token);
    if let Err(resp) = caller_of_hash(&state, hash.clone(), &mut note).await {
        let message = match resp.status() {
            StatusCode::UNAUTHORIZED => "unknown, revoked or expired token",
            StatusCode::FORBIDDEN => "this token's role is not defined in kye.toml",
            StatusCode::TOO_MANY_REQUESTS => "this token is over its rate limit; wait a minute",
            _ => "the warehouse could not answer; try again",
        };
        return html(resp.status(), login_page(Some(message)), note);
    }
    let (id, _csrf) = match Sessions::open(&state, hash).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "no session");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "no session could be opened",
                note,
            );
        }
    };
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if https { "; Secure" } else { "" }
    );
    let mut resp = redirect("/", note);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The viewer of a form post whose CSRF field matches the session's.
async fn poster(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
    note: &mut Note,
) -> Result<Viewer, Box<Response>> {
    let v = viewer(state, headers, note).await?;
    if fields.get("csrf").map(String::as_str) != Some(v.csrf.as_str()) {
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            "the form's CSRF token does not match this session; reload the page and try again",
            note.clone(),
        )));
    }
    Ok(v)
}

async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut note = Note::new("catalog.logout");
    let fields = form(&body);
    let v = match poster(&state, &headers, &fields, &mut note).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    Sessions::close(&state, &v.session).await;
    let mut resp = redirect("/login", note);
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("kye_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

/// `POST /actions/fetch` (model, edge, value): fetches one key through the runtime like
/// `GET /v1/models/{model}/records`, then shows the record page.
async fn fetch_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut note = Note::new("catalog.fetch");
    let fields = form(&body);
    let v = match poster(&state, &headers, &fields, &mut note).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let model = fields.get("model").cloned().unwrap_or_default();
    let edge = fields.get("edge").cloned().unwrap_or_default();
    let value = fields.get("value").cloned().unwrap_or_default();
    note.model = Some(model.clone());
    if !v.reads(&model) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            "this token may not read that model",
            note,
        );
    }
    if !v.caller.role.fetch.allows(&model) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            &format!("token {} may not fetch {model}", v.caller.name),
            note,
        );
    }
    let params = vec![(edge.clone(), value.clone())];
    let request = match super::api::resolve_key(&state, &model, &params, &note) {
        Ok((Some(request), _)) => request,
        Ok((None, _)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                Some(&v),
                &format!("no fetcher of {model} serves {edge}"),
                note,
            )
        }
        Err(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                Some(&v),
                &format!("{edge} = {value} is not a key of {model}"),
                note,
            )
        }
    };
    note.key = Some(format!("{edge}={value}"));
    // The same slots as the API's read-through fetches (`[serve] max_fetches`).
    let Some(_slot) = state.fetch_slot().await else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&v),
            "every fetch slot of the server is busy: try again in a moment",
            note,
        );
    };
    match state.runtime.get(&request.to_string()).await {
        Ok(crate::runtime::GetResult::Stored { .. }) => redirect(
            &format!(
                "/models/{}/record?{}={}",
                html::url(&model),
                html::url(&edge),
                html::url(&value)
            ),
            note,
        ),
        Ok(crate::runtime::GetResult::Rejected { .. }) => redirect("/rejects", note),
        Ok(crate::runtime::GetResult::Missing { reason, .. }) => problem(
            StatusCode::NOT_FOUND,
            Some(&v),
            &format!("the source has no {model} {edge} = {value}: {reason}"),
            note,
        ),
        Err(e) => problem(
            StatusCode::BAD_GATEWAY,
            Some(&v),
            &format!(
                "the source of {model} could not be fetched: {}",
                super::audit::cut(&e.to_string(), 500)
            ),
            note,
        ),
    }
}

/// `POST /actions/backfill` (request): starts a backfill as `POST /v1/runs` does, then shows
/// the runs page.
async fn backfill_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut note = Note::new("catalog.backfill");
    let fields = form(&body);
    let v = match poster(&state, &headers, &fields, &mut note).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let request = fields.get("request").cloned().unwrap_or_default();
    note.key = Some(super::audit::cut(&request, 500));
    let model = match state.runtime.registry().resolve_str(&request) {
        Ok(r) => r.model().name().to_string(),
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                Some(&v),
                &super::audit::cut(&e.to_string(), 1000),
                note,
            )
        }
    };
    note.model = Some(model.clone());
    if !v.caller.role.backfill.allows(&model) || !v.reads(&model) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&v),
            &format!("token {} may not backfill {model}", v.caller.name),
            note,
        );
    }
    match super::api::spawn_backfill(&state, request, 0).await {
        Ok(_) => redirect("/runs", note),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, Some(&v), &e, note),
    }
}

/// A stylesheet or script compiled into the binary; browsers may keep it five minutes.
fn asset(body: &'static str, kind: &'static str) -> Response {
    let resp = (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response();
    let mut resp = secure(resp, Note::new("catalog.asset"));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    resp
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}
