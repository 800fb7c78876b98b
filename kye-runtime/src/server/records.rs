//! `GET /v1/models/{model}/records`: the read-through cache. The store first (a record read
//! before is answered from the memo while the store says it was stored at the same time, its
//! JSON written once and copied into each answer), and so is a key the source said it lacks
//! (its outcome is in the store too); else, for a caller who may fetch, the source, once for
//! every concurrent caller of the same key.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::api::{answer, authenticate, error, forbidden, resolve_key, store_error, St};
use super::audit::{cut, Note};
use super::cache::{raw_record, Fetched};
use super::AppState;
use crate::runtime::GetResult;
use crate::store::{IndexKey, KeyStatus, Timestamp};

/// `GET /v1/models/{model}/records?EDGE=VALUE[&max_age=1d]`: read-through.
pub(crate) async fn records(
    State(state): St,
    model: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let mut note = Note::new("read");
    let asked = Timestamp::now();
    let caller = match authenticate(&state, &headers, &mut note).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (Ok(Path(model)), Ok(Query(params))) = (model, query) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the path or the query string does not decode",
            None,
            note,
        );
    };
    note.model = Some(model.clone());
    if !caller.role.read.allows(&model) {
        return forbidden(
            &format!("token {} may not read {}", caller.name, cut(&model, 100)),
            note,
        );
    }
    let mut max_age = None;
    let mut key_params = Vec::new();
    for (k, v) in params {
        if k == "max_age" {
            match crate::duration::parse(&v) {
                Ok(d) => max_age = Some(d),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("max_age: {e}"),
                        Some("e.g. max_age=1d, 6h, 30m"),
                        note,
                    )
                }
            }
        } else {
            key_params.push((k, v));
        }
    }
    let (request, candidates) = match resolve_key(&state, &model, &key_params, &note) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut index = candidates[0].clone();
    let key_text = index.canonical();
    note.key = Some(key_text.clone());
    // The store first. A record read before is reused while the store says it was stored at
    // the same time (the memo never answers what the store would not).
    let m = model.clone();
    let memo = state.clone();
    let stored = state
        .with_reader(move |r| {
            for k in candidates {
                let Some(at) = r.last_stored(&m, &k)? else {
                    continue;
                };
                let memo_key = memo_key(&m, &k);
                if let Some(rec) = memo.memo.get(&memo_key, at) {
                    return Ok(Some((at, rec, k)));
                }
                if let Some(rec) = r.record(&m, &k)? {
                    let rec = memo.memo.put(memo_key, at, &rec);
                    return Ok(Some((at, rec, k)));
                }
            }
            Ok(None)
        })
        .await;
    let stored = stored.map(|found| {
        found.map(|(at, rec, k)| {
            index = k;
            (at, rec)
        })
    });
    let stored = match stored {
        Ok(s) => s,
        Err(e) => return store_error(e, note),
    };
    let now = Timestamp::now();
    if let Some((at, record)) = &stored {
        let age = at.age(now);
        if max_age.is_none_or(|m| age <= m) {
            note.source = Some("store");
            return found(
                StatusCode::OK,
                Found::stored(&model, &index, age, *at, record),
                note,
            );
        }
    }
    let fetchable = request
        .as_ref()
        .filter(|_| caller.role.fetch.allows(&model));
    let Some(request) = fetchable else {
        let why = if request.is_some() {
            format!("token {} may not fetch {model}", caller.name)
        } else {
            format!("no fetcher of {model} serves this index")
        };
        return match stored {
            Some((at, record)) => {
                note.source = Some("store");
                let mut body = Found::stored(&model, &index, at.age(now), at, &record);
                body.stale = true;
                found(StatusCode::OK, body, note)
            }
            None => {
                note.source = Some("none");
                error(
                    StatusCode::NOT_FOUND,
                    format!("{model} {key_text} is not stored, and {why}"),
                    Some(
                        "ask someone whose role may fetch it, or an admin for the fetch permission",
                    ),
                    note,
                )
            }
        };
    };
    // A key the source said it lacks is answered from the store as well, while that answer
    // is as fresh as the caller asks (without max_age: `[serve] missing_ttl`, since a key
    // missing once may exist later).
    if stored.is_none() {
        let (m, k) = (model.clone(), index.clone());
        // The record is looked for again after the outcome: a fetch that stored it between
        // this request's first look and now wins over the older "missing".
        let known = state
            .with_reader(move |r| {
                let outcome = r.latest_outcome(&m, &k)?;
                Ok(outcome.filter(|_| matches!(r.last_stored(&m, &k), Ok(None))))
            })
            .await;
        match known {
            Ok(Some(o)) if o.status == KeyStatus::Missing => {
                let age = o.at.age(now);
                if age <= max_age.unwrap_or(state.options.missing_ttl) {
                    note.source = Some("store");
                    return answer(
                        StatusCode::NOT_FOUND,
                        json!({
                            "error": format!("the source has no {model} {key_text}"),
                            "reason": o.reason,
                            "run": o.run.0,
                            "source": "store",
                            "checked_at": o.at,
                            "age_seconds": age.as_secs(),
                            "hint": "the source said so when last asked; add max_age (e.g. max_age=1m) to have it asked again when that answer is older",
                        }),
                        note,
                    );
                }
            }
            Ok(_) => {}
            Err(e) => return store_error(e, note),
        }
    }
    // The source, once for every concurrent caller of this key.
    note.source = Some("fetched");
    let runtime = state.runtime.clone();
    let text = request.to_string();
    let cache_key = format!("{model}:{key_text}");
    let (leader, m, k) = (state.clone(), model.clone(), index.clone());
    let (outcome, _ran) = state
        .cache
        .fetch(&cache_key, || async move {
            // Stored by another request's fetch between this request's look at the store and
            // now: when it answers this request (fresh within max_age, or stored since this
            // request began), no second fetch.
            let (m2, k2) = (m.clone(), k.clone());
            let since = leader
                .with_reader(move |r| match r.last_stored(&m2, &k2)? {
                    Some(at)
                        if at >= asked || max_age.is_none_or(|m| at.age(Timestamp::now()) <= m) =>
                    {
                        Ok(r.record(&m2, &k2)?.map(|rec| (at, rec)))
                    }
                    _ => Ok(None),
                })
                .await;
            if let Ok(Some((at, record))) = since {
                let record = leader.memo.put(memo_key(&m, &k), at, &record);
                return Fetched::Recent { record, at };
            }
            let Some(_slot) = leader.fetch_slot().await else {
                return Fetched::Busy;
            };
            match runtime.get(&text).await {
                Ok(GetResult::Stored { record, run, .. }) => {
                    stored_as_read(&leader, &m, &k, &record, run.0).await
                }
                Ok(GetResult::Rejected { errors, run, .. }) => Fetched::Rejected {
                    errors: errors.iter().map(ToString::to_string).collect(),
                    run: run.0,
                },
                Ok(GetResult::Missing { reason, run }) => Fetched::Missing { reason, run: run.0 },
                Err(e) => Fetched::Failed {
                    reason: e.to_string(),
                },
            }
        })
        .await;
    match outcome {
        Fetched::Recent { record, at } => {
            note.source = Some("store");
            found(
                StatusCode::OK,
                Found::stored(&model, &index, at.age(Timestamp::now()), at, &record),
                note,
            )
        }
        Fetched::Stored { record, at, run } => {
            let mut body = Found::stored(&model, &index, at.age(Timestamp::now()), at, &record);
            body.source = "fetched";
            body.run = Some(run);
            found(StatusCode::OK, body, note)
        }
        Fetched::Rejected { errors, run } => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "error": format!("the source's record of {model} {key_text} is invalid; it was quarantined, not stored"),
                "errors": errors,
                "run": run,
                "hint": "GET /v1/rejects shows the payload; the source or the schema needs fixing",
            }),
            note,
        ),
        Fetched::Missing { reason, run } => answer(
            StatusCode::NOT_FOUND,
            json!({"error": format!("the source has no {model} {key_text}"), "reason": reason, "run": run}),
            note,
        ),
        Fetched::Busy => {
            note.source = Some("none");
            let mut r = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "error": format!("{model} {key_text} is not stored and every read-through fetch of the server is busy"),
                    "hint": "try again after Retry-After seconds; an admin may raise [serve] max_fetches",
                }),
                note,
            );
            super::limit::retry_after(&mut r, std::time::Duration::from_secs(1));
            r
        }
        Fetched::Unreadable => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{model} {key_text} was fetched and stored, but the warehouse could not read it back"),
            Some("read it again without max_age: it is stored; the server's log has the cause"),
            note,
        ),
        Fetched::Failed { reason } => answer(
            StatusCode::BAD_GATEWAY,
            json!({
                "error": format!("the source of {model} could not be fetched: {}", cut(&reason, 1000)),
                "hint": "the source is unreachable or refused kye's credentials: try again later; if it persists, an admin checks the source's status and the server's secrets (`secret list`)",
            }),
            note,
        ),
    }
}

/// The memo's key of a record: `Model:{"edge":value}`.
fn memo_key(model: &str, key: &IndexKey) -> String {
    format!("{model}:{}", key.canonical())
}

/// A record the runtime just fetched, validated and stored, as the store renders it: read
/// back by the key asked for (else by the record's primary key), so that a `"fetched"`
/// answer has the shape of a `"store"` one (references as objects such as
/// `{"name": "static"}`, not as the fetcher returned them) on every store. The read also
/// fills the memo, so the next read of the key copies it. Only when the stored record is
/// gone again (deleted since) is the runtime's record answered as it came.
async fn stored_as_read(
    state: &Arc<AppState>,
    model: &str,
    key: &IndexKey,
    fetched: &Value,
    run: i64,
) -> Fetched {
    let primary = primary_key(state, model, fetched).filter(|p| p != key);
    let (m, k) = (model.to_string(), key.clone());
    let back = state
        .with_reader(move |r| {
            for k in std::iter::once(k).chain(primary) {
                let Some(at) = r.last_stored(&m, &k)? else {
                    continue;
                };
                if let Some(rec) = r.record(&m, &k)? {
                    return Ok(Some((at, rec, k)));
                }
            }
            Ok(None)
        })
        .await;
    match back {
        Ok(Some((at, record, found_by))) => Fetched::Stored {
            // Remembered under the key that found it, as the store path does.
            record: state.memo.put(memo_key(model, &found_by), at, &record),
            at,
            run,
        },
        Ok(None) => {
            tracing::warn!(
                model,
                "a record stored by a read-through fetch was not found again"
            );
            Fetched::Stored {
                record: raw_record(fetched),
                at: Timestamp::now(),
                run,
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "store error reading back a fetched record");
            Fetched::Unreadable
        }
    }
}

/// The primary key of `record` of `model` (its values of the primary index's edges), if the
/// registry knows the model and the record has them.
fn primary_key(state: &AppState, model: &str, record: &Value) -> Option<IndexKey> {
    let def = state.runtime.registry().model(model)?.definition();
    let edges = &def.primary_index()?.edges;
    let values: Option<Vec<Value>> = edges
        .iter()
        .map(|e| record.get(e).filter(|v| !v.is_null()).cloned())
        .collect();
    Some(IndexKey::new(edges.iter().map(String::as_str), values?))
}

/// The answer of a record found: the keys in the order the API's other answers have them
/// (serde_json's maps sort them), the record's JSON copied as the memo holds it.
#[derive(serde::Serialize)]
struct Found<'a> {
    age_seconds: u64,
    key: Value,
    model: &'a str,
    record: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<i64>,
    source: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stale: bool,
    stored_at: Timestamp,
}

impl<'a> Found<'a> {
    /// A record from the store, stored at `at`, `age` old.
    fn stored(
        model: &'a str,
        key: &IndexKey,
        age: Duration,
        at: Timestamp,
        record: &'a RawValue,
    ) -> Found<'a> {
        Found {
            age_seconds: age.as_secs(),
            key: key.to_object(),
            model,
            record,
            run: None,
            source: "store",
            stale: false,
            stored_at: at,
        }
    }
}

/// `body` as a JSON answer with its audit note.
fn found(status: StatusCode, body: Found<'_>, note: Note) -> Response {
    let bytes = match serde_json::to_vec(&body) {
        Ok(b) => b,
        // Strings, numbers and JSON already checked: nothing here fails to serialize.
        Err(e) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
                note,
            )
        }
    };
    let mut resp = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response();
    resp.extensions_mut().insert(note);
    resp
}
