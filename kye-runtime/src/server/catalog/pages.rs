//! The catalog's pages: models, records, a record, runs, rejects and drift. Each signs the
//! viewer in first ([`viewer`]) and shows only models the viewer's role may read: another
//! model is left out of every list, and its pages answer 403.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::html::{esc, json_text, url};
use super::{html, problem, viewer, Viewer};
use crate::listing::{Listing, ModelListing};
use crate::server::api::model_of;
use crate::server::audit::Note;
use crate::server::AppState;
use crate::store::{Filter, RecordQuery, RunId, StoreError};

type St = State<Arc<AppState>>;

/// Records shown on a page of the record browser.
const PAGE: usize = 25;
/// The deepest page the browser reads (it reads every record before the page).
const MAX_PAGE: usize = 400;

macro_rules! signed_in {
    ($state:expr, $headers:expr, $note:expr) => {
        match viewer(&$state, &$headers, &mut $note).await {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

fn store_problem(v: &Viewer, e: StoreError, note: Note) -> Response {
    tracing::error!(error = %e, "catalog: store error");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some(v),
        "the warehouse could not answer; the server's log has the cause",
        note,
    )
}

/// An edge's type as the viewer may see it: a model outside the role is not named.
fn type_cell(v: &Viewer, ty: &str, models: &[String]) -> String {
    if models.iter().any(|m| m == ty) {
        if v.reads(ty) {
            format!(r##"<a href="/#model-{0}">{1}</a>"##, url(ty), esc(ty))
        } else {
            "<em>a model outside your role</em>".to_string()
        }
    } else {
        format!("<code>{}</code>", esc(ty))
    }
}

fn cardinality_text(marker: &str) -> &'static str {
    match marker {
        "?" => "optional (?)",
        "*" => "any number (*)",
        "+" => "one or more (+)",
        _ => "exactly one",
    }
}

/// What the models page shows of a model's state in the warehouse.
#[derive(Default)]
struct ModelState {
    stored: u64,
    last_run: Option<crate::store::RunInfo>,
    rejects: usize,
    drift: usize,
}

/// `GET /`: every model the role may read, with its schema, providers and state.
pub(crate) async fn models(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("catalog.models");
    let v = signed_in!(state, headers, note);
    let listing = Listing::new(state.runtime.registry());
    let all: Vec<String> = listing.models.iter().map(|m| m.name.clone()).collect();
    let readable: Vec<ModelListing> = listing
        .models
        .iter()
        .filter(|m| v.reads(&m.name))
        .cloned()
        .collect();
    let keys: Vec<(String, Vec<String>)> = readable
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.indexes.first().cloned().unwrap_or_default(),
            )
        })
        .collect();
    let scanned = state
        .with_reader(move |r| {
            let mut states: BTreeMap<String, ModelState> = BTreeMap::new();
            for (model, key) in &keys {
                let key: Vec<&str> = key.iter().map(String::as_str).collect();
                let mut n = 0u64;
                if !key.is_empty() {
                    r.content_hashes(model, &key, &mut |_, _| {
                        n += 1;
                        Ok(())
                    })?;
                }
                states.entry(model.clone()).or_default().stored = n;
            }
            for run in r.runs(Some(500))? {
                if let Some(s) = model_of(&run.request).and_then(|m| states.get_mut(&m)) {
                    if s.last_run.is_none() {
                        s.last_run = Some(run);
                    }
                }
            }
            for rj in r.rejects(None, Some(1000))? {
                if let Some(s) = states.get_mut(&rj.model) {
                    s.rejects += 1;
                }
            }
            for d in r.drift()? {
                if let Some(s) = states.get_mut(&d.model) {
                    s.drift += 1;
                }
            }
            Ok(states)
        })
        .await;
    let states = match scanned {
        Ok(s) => s,
        Err(e) => return store_problem(&v, e, note),
    };
    let next = *state.next_refresh.lock().unwrap_or_else(|p| p.into_inner());
    let mut freshness = BTreeMap::new();
    for policy in state.freshness.iter().filter(|p| v.reads(&p.model)) {
        match crate::server::fresh::scan(&state, policy, false).await {
            Ok(scan) => {
                freshness.insert(
                    policy.model.clone(),
                    crate::server::fresh::report(policy, &scan, next),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "catalog: freshness scan failed");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&v),
                    "the warehouse could not answer; the server's log has the cause",
                    note,
                );
            }
        }
    }
    let registry = state.runtime.registry();
    let mut body = String::new();
    if readable.is_empty() {
        body.push_str("<p>Your role may read no model.</p>");
    }
    body.push_str(r#"<nav aria-label="Models"><ul class="toc">"#);
    for m in &readable {
        let _ = write!(
            body,
            r##"<li><a href="#model-{}">{}</a></li>"##,
            url(&m.name),
            esc(&m.name)
        );
    }
    body.push_str("</ul></nav>");
    for m in &readable {
        let def = registry.model(&m.name).map(|r| r.definition());
        let st = states.get(&m.name);
        let _ = write!(
            body,
            r#"<section class="model" id="model-{id}" aria-labelledby="h-{id}"><h2 id="h-{id}">{name}</h2>"#,
            id = url(&m.name),
            name = esc(&m.name)
        );
        if let Some(doc) = def.and_then(|d| d.doc.as_deref()) {
            let _ = write!(body, r#"<p class="doc">{}</p>"#, esc(doc));
        }
        let _ = write!(
            body,
            r#"<p class="where">Declared at <code>{}</code></p>"#,
            esc(&m.location)
        );
        // State.
        body.push_str(r#"<dl class="state">"#);
        let stored = st.map(|s| s.stored).unwrap_or(0);
        let _ = write!(
            body,
            r#"<dt>Stored records</dt><dd><a href="/models/{}/records">{stored}</a></dd>"#,
            url(&m.name)
        );
        match freshness.get(&m.name) {
            Some(f) => {
                let _ = write!(
                    body,
                    "<dt>Freshness</dt><dd>{} fresh, {} stale (max age {} s); oldest {}; next refresh {}{}</dd>",
                    f["fresh"],
                    f["stale"],
                    f["max_age_seconds"],
                    esc(&value_text(&f["oldest"])),
                    esc(&value_text(&f["next_refresh"])),
                    if f["error"] == json!(true) {
                        " — <strong>past its error threshold</strong>"
                    } else if f["warn"] == json!(true) {
                        " — <strong>past its warning threshold</strong>"
                    } else {
                        ""
                    }
                );
            }
            None => body.push_str("<dt>Freshness</dt><dd>no [freshness] policy</dd>"),
        }
        match st.and_then(|s| s.last_run.as_ref()) {
            Some(run) => {
                let _ = write!(
                    body,
                    r#"<dt>Last run</dt><dd><a href="/runs#run-{}">run {}</a>: {} ({}), {}</dd>"#,
                    run.id.0,
                    run.id.0,
                    esc(&run.request),
                    esc(&format!("{:?}", run.status).to_lowercase()),
                    esc(&run.started_at.to_string())
                );
            }
            None => body.push_str("<dt>Last run</dt><dd>none</dd>"),
        }
        let _ = write!(
            body,
            r#"<dt>Open rejects</dt><dd><a href="/rejects#{0}">{1}</a></dd><dt>Drift</dt><dd><a href="/drift#{0}">{2} unknown field(s)</a></dd></dl>"#,
            url(&m.name),
            st.map(|s| s.rejects).unwrap_or(0),
            st.map(|s| s.drift).unwrap_or(0)
        );
        // Fields.
        let _ = write!(
            body,
            r#"<table><caption>Fields of {}</caption><thead><tr><th scope="col">Field</th><th scope="col">Type</th><th scope="col">Cardinality</th><th scope="col">About</th></tr></thead><tbody>"#,
            esc(&m.name)
        );
        for e in &m.edges {
            let doc = def
                .and_then(|d| d.edge(&e.name))
                .and_then(|e| e.doc.as_deref())
                .unwrap_or("");
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.name),
                type_cell(&v, &e.ty, &all),
                cardinality_text(&e.cardinality),
                esc(doc)
            );
        }
        body.push_str("</tbody></table>");
        if !m.indexes.is_empty() {
            body.push_str("<h3>Indexes</h3><ul>");
            for (i, ix) in m.indexes.iter().enumerate() {
                let _ = write!(
                    body,
                    "<li><code>({})</code>{}</li>",
                    esc(&ix.join(", ")),
                    if i == 0 { " — primary" } else { "" }
                );
            }
            body.push_str("</ul>");
        }
        if let Some(def) = def.filter(|d| !d.assertions.is_empty()) {
            body.push_str("<h3>Assertions</h3><ul>");
            for a in &def.assertions {
                let _ = write!(body, "<li><code>assert {}</code></li>", esc(&a.text));
            }
            body.push_str("</ul>");
        }
        // Providers.
        body.push_str("<h3>Provided by</h3><ul class=\"providers\">");
        let mut any = false;
        for f in listing.fetchers.iter().filter(|f| f.model == m.name) {
            any = true;
            let _ = write!(
                body,
                r#"<li class="fetcher">fetcher <code>{}</code> by ({}){} — <code>{}</code>{}</li>"#,
                esc(&format!("{}::{}", f.module, f.function)),
                esc(&f.identifier.join(", ")),
                f.batch.map(|b| format!(", batch {b}")).unwrap_or_default(),
                esc(&f.location),
                doc_suffix(&f.doc)
            );
        }
        for l in listing.listers.iter().filter(|l| l.model == m.name) {
            any = true;
            let _ = write!(
                body,
                r#"<li class="lister">lister <code>{}</code> — <code>{}</code>{}</li>"#,
                esc(&l.function),
                esc(&l.location),
                doc_suffix(&l.doc)
            );
        }
        for t in listing.transformers.iter().filter(|t| t.output == m.name) {
            any = true;
            let inputs: Vec<String> = t
                .inputs
                .iter()
                .map(|i| {
                    if v.reads(i) {
                        esc(i)
                    } else {
                        "a model outside your role".to_string()
                    }
                })
                .collect();
            let _ = write!(
                body,
                r#"<li class="transformer">transformer <code>{}</code> from {} — <code>{}</code>{}</li>"#,
                esc(&t.function),
                inputs.join(", "),
                esc(&t.location),
                doc_suffix(&t.doc)
            );
        }
        if !any {
            body.push_str("<li>nothing in this binary</li>");
        }
        body.push_str("</ul>");
        // Actions.
        actions(&mut body, &v, m, registry);
        body.push_str("</section>");
    }
    super::sources::section(&mut body, &listing.sources);
    html(StatusCode::OK, v.page("Models", "/", &body), note)
}

fn doc_suffix(doc: &str) -> String {
    if doc.is_empty() {
        String::new()
    } else {
        format!(r#"<br><span class="doc">{}</span>"#, esc(doc))
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "—".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The fetch and backfill forms, where the role allows them.
fn actions(body: &mut String, v: &Viewer, m: &ModelListing, registry: &crate::Registry) {
    let id = url(&m.name);
    if v.caller.role.fetch.allows(&m.name) {
        let edges: Vec<String> = registry
            .fetchers_for(&m.name)
            .filter(|f| f.identifier.len() == 1)
            .map(|f| f.identifier[0].to_string())
            .collect();
        if !edges.is_empty() {
            let _ = write!(
                body,
                r#"<form method="post" action="/actions/fetch" class="action"><h3>Fetch a key</h3><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="model" value="{model}"><label for="fe-{id}">Index</label><select id="fe-{id}" name="edge">"#,
                csrf = esc(&v.csrf),
                model = esc(&m.name),
            );
            for e in edges {
                let _ = write!(body, r#"<option>{}</option>"#, esc(&e));
            }
            let _ = write!(
                body,
                r#"</select><label for="fv-{id}">Value</label><input id="fv-{id}" name="value" required><button type="submit">Fetch</button></form>"#
            );
        }
    }
    if v.caller.role.backfill.allows(&m.name) {
        let _ = write!(
            body,
            r#"<form method="post" action="/actions/backfill" class="action"><h3>Start a backfill</h3><input type="hidden" name="csrf" value="{csrf}"><label for="bf-{id}">Request</label><input id="bf-{id}" name="request" required placeholder="{model}.{edge} in 1..=10"><button type="submit">Start</button></form>"#,
            csrf = esc(&v.csrf),
            model = esc(&m.name),
            edge = esc(&m
                .indexes
                .first()
                .and_then(|i| i.first())
                .cloned()
                .unwrap_or_default()),
        );
    }
}

/// `GET /lineage`: the SVG graph of readable models.
pub(crate) async fn lineage(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("catalog.lineage");
    let v = signed_in!(state, headers, note);
    let listing = Listing::new(state.runtime.registry());
    let svg = super::lineage::svg(&listing, &|m| v.reads(m));
    let body = format!(
        r#"<p>Solid arrows: a model's field references another model. Dashed arrows: a transformer computes a model from another. Each box links to its model.</p><figure>{svg}<figcaption>Lineage of the models your role may read</figcaption></figure>"#
    );
    html(StatusCode::OK, v.page("Lineage", "/lineage", &body), note)
}

/// The model of a path, when the viewer may read it: else the answer (403 for a model
/// outside the role, as for one the binary does not have, so that neither is told apart).
#[allow(clippy::result_large_err)]
fn readable_model(
    state: &AppState,
    v: &Viewer,
    model: Result<Path<String>, PathRejection>,
    note: &mut Note,
) -> Result<&'static kye_lang::Model, Response> {
    let Ok(Path(model)) = model else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            Some(v),
            "the path does not decode",
            note.clone(),
        ));
    };
    note.model = Some(crate::server::audit::cut(&model, 100));
    match state
        .runtime
        .registry()
        .model(&model)
        .filter(|m| v.reads(m.name()))
    {
        Some(m) => Ok(m.definition()),
        None => Err(problem(
            StatusCode::FORBIDDEN,
            Some(v),
            &format!("token {} may not read that model", v.caller.name),
            note.clone(),
        )),
    }
}

/// The primary key edges of a model.
fn primary(def: &kye_lang::Model) -> Vec<String> {
    def.indexes
        .first()
        .map(|i| i.edges.clone())
        .unwrap_or_default()
}

/// The link to a record's page by its primary key (`None` when a key value is missing).
fn record_link(model: &str, key_edges: &[String], record: &Value) -> Option<String> {
    let mut href = format!("/models/{}/record?", url(model));
    for (i, e) in key_edges.iter().enumerate() {
        let value = record.get(e).filter(|v| !v.is_null())?;
        if i > 0 {
            href.push('&');
        }
        let _ = write!(href, "{}={}", url(e), url(&value_text(value)));
    }
    Some(href)
}

fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Vec<(String, String)> {
    query.map(|q| q.0).unwrap_or_default()
}

/// `GET /models/{model}/records?edge=E&value=V&page=N`: stored records, a page at a time,
/// optionally those whose edge `E` (any index's) equals `V`.
pub(crate) async fn records(
    State(state): St,
    model: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("catalog.records");
    let v = signed_in!(state, headers, note);
    let def = match readable_model(&state, &v, model, &mut note) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let params = query_pairs(query);
    let param = |k: &str| {
        params
            .iter()
            .find(|(p, _)| p == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut index_edges: Vec<String> = Vec::new();
    for ix in &def.indexes {
        for e in &ix.edges {
            if !index_edges.contains(e) {
                index_edges.push(e.clone());
            }
        }
    }
    let edge = param("edge");
    let value = param("value");
    let page = param("page").parse::<usize>().unwrap_or(0).min(MAX_PAGE);
    let mut query = RecordQuery::new(def.name.clone());
    query.depth = 0;
    query.limit = Some((page + 1) * PAGE + 1);
    if !value.is_empty() {
        if !index_edges.contains(&edge) {
            return problem(
                StatusCode::BAD_REQUEST,
                Some(&v),
                &format!("{} has no index on {edge:?}", def.name),
                note,
            );
        }
        query.filter = Some(Filter {
            edge: edge.clone(),
            value: Value::String(value.clone()),
        });
    }
    let rows = match state.with_reader(move |r| r.records(&query)).await {
        Ok(rows) => rows,
        Err(e) => return store_problem(&v, e, note),
    };
    let more = rows.len() > (page + 1) * PAGE;
    let shown: Vec<&Value> = rows.iter().skip(page * PAGE).take(PAGE).collect();
    let key_edges = primary(def);
    let columns: Vec<&kye_lang::Edge> = def
        .edges
        .iter()
        .filter(|e| !key_edges.contains(&e.name))
        .filter(|e| {
            matches!(
                e.ty,
                kye_lang::Type::Primitive(_) | kye_lang::Type::Constrained { .. }
            )
        })
        .take(4)
        .collect();
    let mut body = String::from(
        r#"<form method="get" class="lookup" role="search"><label for="edge">Index</label><select id="edge" name="edge">"#,
    );
    for e in &index_edges {
        let sel = if *e == edge { " selected" } else { "" };
        let _ = write!(body, "<option{sel}>{}</option>", esc(e));
    }
    let _ = write!(
        body,
        r#"</select><label for="value">Value</label><input id="value" name="value" value="{}"><button type="submit">Look up</button></form>"#,
        esc(&value)
    );
    if shown.is_empty() {
        body.push_str(r#"<p class="empty">No stored record matches.</p>"#);
    } else {
        let _ = write!(
            body,
            r#"<table><caption>Stored {} records, page {}</caption><thead><tr>"#,
            esc(&def.name),
            page + 1
        );
        for e in &key_edges {
            let _ = write!(body, r#"<th scope="col">{}</th>"#, esc(e));
        }
        for e in &columns {
            let _ = write!(body, r#"<th scope="col">{}</th>"#, esc(&e.name));
        }
        body.push_str("</tr></thead><tbody>");
        for rec in &shown {
            body.push_str("<tr>");
            let link = record_link(&def.name, &key_edges, rec);
            for (i, e) in key_edges.iter().enumerate() {
                let text = esc(&value_text(rec.get(e).unwrap_or(&Value::Null)));
                match (&link, i) {
                    (Some(href), 0) => {
                        let _ = write!(body, r#"<td><a href="{}">{text}</a></td>"#, esc(href));
                    }
                    _ => {
                        let _ = write!(body, "<td>{text}</td>");
                    }
                }
            }
            for e in &columns {
                let _ = write!(
                    body,
                    "<td>{}</td>",
                    esc(&super::html::json_text(
                        rec.get(&e.name).unwrap_or(&Value::Null),
                        120
                    ))
                );
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table>");
    }
    let base = format!(
        "/models/{}/records?edge={}&value={}",
        url(&def.name),
        url(&edge),
        url(&value)
    );
    body.push_str(r#"<nav aria-label="Pages" class="pager">"#);
    if page > 0 {
        let _ = write!(
            body,
            r#"<a rel="prev" href="{}&page={}">Previous page</a> "#,
            esc(&base),
            page - 1
        );
    }
    if more && page < MAX_PAGE {
        let _ = write!(
            body,
            r#"<a rel="next" href="{}&page={}">Next page</a>"#,
            esc(&base),
            page + 1
        );
    }
    body.push_str("</nav>");
    let title = format!("{} records", def.name);
    html(StatusCode::OK, v.page(&title, "", &body), note)
}

/// A referenced value as a link to its record when the viewer may read the model.
fn reference(v: &Viewer, state: &AppState, target: &str, value: &Value) -> String {
    let text = value_text(value);
    let target_def = state
        .runtime
        .registry()
        .model(target)
        .map(|m| m.definition());
    match target_def.filter(|_| v.reads(target)) {
        Some(def) => {
            // A reference is its key: the value itself for a one-edge key, else (or when
            // the store nests it) an object of the key's edges.
            let key = primary(def);
            let href = match (key.as_slice(), value) {
                ([edge], Value::String(_) | Value::Number(_)) => {
                    record_link(target, &key, &json!({ edge.as_str(): value }))
                }
                (_, Value::Object(_)) => record_link(target, &key, value),
                _ => None,
            };
            let shown = match (key.as_slice(), value) {
                ([edge], Value::Object(o)) => o.get(edge).map(value_text).unwrap_or(text),
                _ => text,
            };
            match href {
                Some(href) => format!(r#"<a href="{}">{}</a>"#, esc(&href), esc(&shown)),
                None => format!("<code>{}</code>", esc(&json_text(value, 300))),
            }
        }
        None => format!("<code>{}</code>", esc(&json_text(value, 300))),
    }
}

/// `GET /models/{model}/record?EDGE=VALUE…`: one stored record with its provenance and its
/// references as links.
pub(crate) async fn record(
    State(state): St,
    model: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("catalog.record");
    let v = signed_in!(state, headers, note);
    let def = match readable_model(&state, &v, model, &mut note) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let params = query_pairs(query);
    let Some((edge, value)) = params.first().cloned() else {
        return problem(
            StatusCode::BAD_REQUEST,
            Some(&v),
            &format!("name a key of {}: ?EDGE=VALUE", def.name),
            note,
        );
    };
    note.key = Some(crate::server::audit::cut(&format!("{edge}={value}"), 200));
    if def.edge(&edge).is_none() {
        return problem(
            StatusCode::BAD_REQUEST,
            Some(&v),
            &format!("{} has no field {edge:?}", def.name),
            note,
        );
    }
    let mut query = RecordQuery::new(def.name.clone());
    query.depth = 0;
    query.provenance = true;
    query.limit = Some(50);
    query.filter = Some(Filter {
        edge,
        value: Value::String(value),
    });
    let rows = match state.with_reader(move |r| r.records(&query)).await {
        Ok(rows) => rows,
        Err(e) => return store_problem(&v, e, note),
    };
    let found = rows.into_iter().find(|r| {
        params
            .iter()
            .all(|(e, want)| r.get(e).is_some_and(|got| value_text(got) == *want))
    });
    let Some(rec) = found else {
        return problem(
            StatusCode::NOT_FOUND,
            Some(&v),
            &format!("no stored {} with that key", def.name),
            note,
        );
    };
    let mut body = String::from(
        r#"<table><caption>Fields</caption><thead><tr><th scope="col">Field</th><th scope="col">Value</th></tr></thead><tbody>"#,
    );
    for e in &def.edges {
        let value = rec.get(&e.name).unwrap_or(&Value::Null);
        let cell = match (&e.ty, value) {
            (_, Value::Null) => "—".to_string(),
            (kye_lang::Type::Model(target), Value::Array(items)) => items
                .iter()
                .map(|i| reference(&v, &state, target, i))
                .collect::<Vec<_>>()
                .join(", "),
            (kye_lang::Type::Model(target), single) => reference(&v, &state, target, single),
            (_, other) => esc(&value_text(other)),
        };
        let _ = write!(
            body,
            r#"<tr><th scope="row"><code>{}</code></th><td>{cell}</td></tr>"#,
            esc(&e.name)
        );
    }
    body.push_str("</tbody></table><h2>Provenance</h2><dl class=\"state\">");
    let prov = rec.get("_kye").cloned().unwrap_or(Value::Null);
    if let Some(run) = prov.get("run").and_then(Value::as_i64) {
        let _ = write!(
            body,
            r##"<dt>Run</dt><dd><a href="/runs#run-{run}">run {run}</a></dd>"##
        );
    }
    for (k, label) in [
        ("fetcher", "Fetcher"),
        ("fetched_at", "Fetched at"),
        ("hash", "Content hash"),
    ] {
        if let Some(x) = prov.get(k) {
            let _ = write!(
                body,
                "<dt>{label}</dt><dd><code>{}</code></dd>",
                esc(&value_text(x))
            );
        }
    }
    body.push_str("</dl>");
    let _ = write!(
        body,
        r#"<p><a href="/models/{}/records">All {} records</a></p>"#,
        url(&def.name),
        esc(&def.name)
    );
    let title = format!(
        "{} {}",
        def.name,
        params
            .iter()
            .map(|(e, x)| format!("{e} = {x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    html(StatusCode::OK, v.page(&title, "", &body), note)
}

/// The runs of readable models, newest first, running ones with their live progress.
async fn readable_runs(
    state: &Arc<AppState>,
    v: &Viewer,
    limit: usize,
) -> Result<Vec<Value>, StoreError> {
    let role = v.caller.role.clone();
    state
        .with_reader(move |r| {
            let mut out = Vec::new();
            for run in r.runs(Some(limit.saturating_mul(4)))? {
                if !model_of(&run.request).is_some_and(|m| role.read.allows(&m)) {
                    continue;
                }
                let running = run.status == crate::store::RunStatus::Running;
                let mut value = serde_json::to_value(&run).unwrap_or(Value::Null);
                if running {
                    let progress = r.outcome_counts(RunId(run.id.0))?;
                    value["counts"] = serde_json::to_value(progress).unwrap_or(Value::Null);
                }
                out.push(value);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
}

const COUNTS: &[&str] = &["stored", "rejected", "missing", "failed", "skipped"];

/// `GET /runs`: the run history; `catalog.js` updates running ones from `/runs.json`.
pub(crate) async fn runs(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("catalog.runs");
    let v = signed_in!(state, headers, note);
    let runs = match readable_runs(&state, &v, 100).await {
        Ok(r) => r,
        Err(e) => return store_problem(&v, e, note),
    };
    let mut body = String::from(
        r#"<p>Running runs update on their own while this page is open (every second); without JavaScript, reload to see progress. <span id="live" role="status" aria-live="polite"></span></p>"#,
    );
    body.push_str(r#"<table id="runs" data-poll="/runs.json"><caption>Runs, newest first</caption><thead><tr><th scope="col">Run</th><th scope="col">Request</th><th scope="col">Status</th><th scope="col">Started</th><th scope="col">Ended</th>"#);
    for c in COUNTS {
        let _ = write!(body, r#"<th scope="col">{c}</th>"#);
    }
    body.push_str(r#"<th scope="col">Error</th></tr></thead><tbody>"#);
    for run in &runs {
        let id = run["id"].as_i64().unwrap_or(0);
        let _ = write!(
            body,
            r#"<tr id="run-{id}" data-run="{id}"><th scope="row">{id}</th><td><code>{}</code></td><td data-field="status">{}</td><td>{}</td><td data-field="ended_at">{}</td>"#,
            esc(&value_text(&run["request"])),
            esc(&value_text(&run["status"])),
            esc(&value_text(&run["started_at"])),
            esc(&value_text(&run["ended_at"])),
        );
        for c in COUNTS {
            let _ = write!(
                body,
                r#"<td data-count="{c}">{}</td>"#,
                run["counts"][c].as_u64().unwrap_or(0)
            );
        }
        let _ = write!(
            body,
            r#"<td data-field="error">{}</td></tr>"#,
            esc(&value_text(&run["error"]))
        );
    }
    body.push_str("</tbody></table>");
    if runs.is_empty() {
        body.push_str(r#"<p class="empty">No runs of models your role may read.</p>"#);
    }
    html(StatusCode::OK, v.page("Runs", "/runs", &body), note)
}

/// `GET /runs.json`: what `/runs` shows, for its script (the session's cookie signs it in).
pub(crate) async fn runs_json(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("catalog.poll");
    let v = signed_in!(state, headers, note);
    match readable_runs(&state, &v, 100).await {
        Ok(runs) => super::json(json!({ "runs": runs }), note),
        Err(e) => store_problem(&v, e, note),
    }
}

/// The top-level payload field a validation error points at (`weight` of `weight`,
/// `$.weight`, `types[0].name`), or its first edge.
fn failing_fields(errors: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in errors.as_array().into_iter().flatten() {
        let place = e
            .get("path")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                e.get("edges")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        if let Some(p) = place {
            let p = p.trim_start_matches("$.").trim_start_matches('$');
            let head: String = p.chars().take_while(|c| *c != '.' && *c != '[').collect();
            if !head.is_empty() && !out.contains(&head) {
                out.push(head);
            }
        }
    }
    out
}

/// A payload pretty-printed with the lines of failing top-level fields marked.
fn payload_html(payload: &Value, failing: &[String]) -> String {
    let Value::Object(map) = payload else {
        return esc(&serde_json::to_string_pretty(payload).unwrap_or_default());
    };
    let mut out = String::from("{\n");
    let n = map.len();
    for (i, (k, val)) in map.iter().enumerate() {
        let text = serde_json::to_string_pretty(val).unwrap_or_default();
        let text = super::super::audit::cut(&text, 2000).replace('\n', "\n  ");
        let line = format!(
            "  {}: {}{}",
            serde_json::to_string(k).unwrap_or_default(),
            text,
            if i + 1 < n { "," } else { "" }
        );
        if failing.contains(k) {
            let _ = write!(
                out,
                r#"<mark class="failing" data-field="{}" title="this field failed validation">{}</mark>"#,
                esc(k),
                esc(&line)
            );
        } else {
            out.push_str(&esc(&line));
        }
        out.push('\n');
    }
    out.push('}');
    out
}

/// `GET /rejects`: quarantined payloads of readable models, failing fields marked.
pub(crate) async fn rejects(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("catalog.rejects");
    let v = signed_in!(state, headers, note);
    let rows = match state.with_reader(|r| r.rejects(None, Some(400))).await {
        Ok(rows) => rows,
        Err(e) => return store_problem(&v, e, note),
    };
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| v.reads(&r.model))
        .take(100)
        .collect();
    let mut body = String::new();
    if rows.is_empty() {
        body.push_str(r#"<p class="empty">No open rejects in models your role may read.</p>"#);
    }
    let mut anchored = std::collections::BTreeSet::new();
    for r in &rows {
        let anchor = if anchored.insert(r.model.clone()) {
            format!(r#" id="{}""#, url(&r.model))
        } else {
            String::new()
        };
        let failing = failing_fields(&r.errors);
        let _ = write!(
            body,
            r#"<article class="reject"{anchor} aria-labelledby="rj-{id}"><h2 id="rj-{id}">{model} {key} <small>reject {id}, run <a href="/runs#run-{run}">{run}</a></small></h2><p>{reason}</p><ul class="errors">"#,
            id = r.id,
            model = esc(&r.model),
            key = esc(&r
                .key
                .as_ref()
                .map(|k| json_text(k, 200))
                .unwrap_or_default()),
            run = r.run.0,
            reason = esc(&crate::server::audit::cut(&r.reason, 1000)),
        );
        for e in r.errors.as_array().into_iter().flatten() {
            let _ = write!(
                body,
                "<li>{}</li>",
                esc(&crate::server::audit::cut(
                    e.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("invalid"),
                    500
                ))
            );
        }
        let _ = write!(
            body,
            r#"</ul><p>Fetched by <code>{}</code> at {}. Failing field(s): {}</p><pre class="payload" tabindex="0" aria-label="Payload of reject {}">{}</pre></article>"#,
            esc(&r.fetcher),
            esc(&r.at.to_string()),
            if failing.is_empty() {
                "—".to_string()
            } else {
                failing
                    .iter()
                    .map(|f| format!("<code>{}</code>", esc(f)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            r.id,
            payload_html(&r.payload, &failing)
        );
    }
    html(StatusCode::OK, v.page("Rejects", "/rejects", &body), note)
}

/// `GET /drift`: fields the sources send that readable models do not know.
pub(crate) async fn drift(State(state): St, headers: HeaderMap) -> Response {
    let mut note = Note::new("catalog.drift");
    let v = signed_in!(state, headers, note);
    let rows = match state.with_reader(|r| r.drift()).await {
        Ok(rows) => rows,
        Err(e) => return store_problem(&v, e, note),
    };
    let mut by_model: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for d in rows.into_iter().filter(|d| v.reads(&d.model)) {
        by_model.entry(d.model.clone()).or_default().push(d);
    }
    let mut body = String::new();
    if by_model.is_empty() {
        body.push_str(
            r#"<p class="empty">No unknown fields seen in models your role may read.</p>"#,
        );
    }
    for (model, rows) in &by_model {
        let _ = write!(
            body,
            r#"<section id="{0}" aria-labelledby="dr-{0}"><h2 id="dr-{0}">{1}</h2><table><caption>Fields {1}'s sources send that the schema does not know</caption><thead><tr><th scope="col">Path</th><th scope="col">Example</th><th scope="col">Seen</th><th scope="col">First seen</th><th scope="col">Last seen</th></tr></thead><tbody>"#,
            url(model),
            esc(model)
        );
        for d in rows {
            let _ = write!(
                body,
                r#"<tr><th scope="row"><code>{}</code></th><td><code>{}</code></td><td>{}</td><td>{} (run {})</td><td>{} (run {})</td></tr>"#,
                esc(&d.path),
                esc(&json_text(&d.example, 200)),
                d.count,
                esc(&d.first_seen.to_string()),
                d.first_run.0,
                esc(&d.last_seen.to_string()),
                d.last_run.0
            );
        }
        body.push_str("</tbody></table></section>");
    }
    html(StatusCode::OK, v.page("Drift", "/drift", &body), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reject_marks_its_failing_field_and_escapes_the_payload() {
        let errors = json!([{"kind": "assertion", "message": "weight > 0", "edges": ["weight"]},
                            {"kind": "type", "path": "types[0].name", "message": "expected a string"}]);
        let failing = failing_fields(&errors);
        assert_eq!(failing, vec!["weight".to_string(), "types".to_string()]);
        let html = payload_html(
            &json!({"id": 1, "weight": -5, "name": "<b>x</b>"}),
            &failing,
        );
        assert!(
            html.contains(r#"<mark class="failing" data-field="weight""#),
            "{html}"
        );
        assert!(
            html.contains("&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert!(!html.contains(r#"data-field="id""#), "{html}");
    }
}
