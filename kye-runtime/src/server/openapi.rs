//! The OpenAPI 3.1 document served at `/openapi.json`. A test asks the real server for every
//! path and method listed here (none may be an unknown route) and checks that every route
//! answers as the document says, so the two cannot drift apart silently.

use serde_json::{json, Value};

/// Every route of the API: method, path (OpenAPI's `{param}` syntax), summary, whether it
/// needs a token.
pub(crate) const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("get", "/health", "Liveness: 200 while the server runs.", false),
    ("get", "/openapi.json", "This document.", false),
    ("get", "/v1/models", "The models the caller may read, with fetch and backfill.", true),
    (
        "get",
        "/v1/models/{model}/records",
        "Read-through: one record by key (?EDGE=VALUE[&max_age=1d]), from the store when fresh, else fetched (role `fetch`).",
        true,
    ),
    ("get", "/v1/runs", "Runs of readable models, newest first (?limit=N).", true),
    ("post", "/v1/runs", "Start a backfill (role `backfill`): {\"request\": \"...\", \"follow\": true}; 202 with its id.", true),
    ("get", "/v1/runs/{id}", "One run with its progress.", true),
    ("get", "/v1/rejects", "Quarantined payloads of readable models (?limit=N).", true),
    ("get", "/v1/drift", "Fields the sources send that the schema does not know.", true),
    ("get", "/v1/registry", "The models and fetchers linked into the server.", true),
    ("get", "/v1/audit", "The audit log, newest first (role `admin`; ?limit=N).", true),
    ("get", "/v1/freshness", "Per readable model with [freshness]: keys fresh and stale, the oldest, the next refresh, past warn/error.", true),
];

/// The document.
pub(crate) fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, auth) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": responses(method, path, *auth),
        });
        let params = parameters(path);
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if *auth {
            op["security"] = json!([{"bearer": []}]);
        }
        if *method == "post" {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "request": {"type": "string", "example": "Pokemon.id in 1..=151"},
                        "follow": {"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0, "maximum": 16}]}
                    }
                }}}
            });
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "kye serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The records of a kye warehouse, read through to the sources with the server's credentials. Errors are {\"error\": \"...\", \"hint\": \"...\"}."
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": Value::Object(paths),
    })
}

fn parameters(path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if path.ends_with("/records") {
        out.push(json!({"name": "max_age", "in": "query", "required": false, "schema": {"type": "string", "example": "1d"}}));
    }
    out
}

fn responses(method: &str, path: &str, auth: bool) -> Value {
    let ok = if method == "post" { "202" } else { "200" };
    let mut r = json!({ ok: {"description": "OK"} });
    if auth {
        r["401"] = json!({"description": "no, malformed, unknown, revoked or expired token"});
        r["403"] = json!({"description": "the token's role does not allow it"});
        r["429"] = json!({"description": "over the token's rate limit (Retry-After)"});
    }
    if path.ends_with("/records") {
        r["404"] = json!({"description": "no such key (in the store, or at the source)"});
        r["422"] = json!({"description": "the source's record is invalid (quarantined)"});
        r["502"] = json!({"description": "the source could not be reached"});
    }
    r
}
