//! Shared pieces of kye-runtime's integration tests (`tests/integration/main.rs`):
//!
//! - [`capture`]: a tracing subscriber recording every field as text, for secret-leak checks
//!   (`reliability_hostile.rs`, `runtime_secrets.rs`);
//! - [`echo`]: a loopback server answering with the request head it received
//!   (`http_context.rs`, `runtime_secrets.rs`);
//! - [`recorder`]: a loopback server recording request heads, `/hop` redirecting elsewhere
//!   (`http_context.rs`);
//! - for the reliability suite (`tests/reliability_*.rs`): a small Pokémon model, a fetcher
//!   that maps PokeAPI-shaped documents from a loopback server onto it, the server's
//!   documents, and helpers to run a test binary's own function in a child process.

#![allow(dead_code)] // each test file uses a different part

pub mod capture;
pub mod echo;
pub mod recorder;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use kye_lang::Schema;
use kye_runtime::testing::{FetcherBuilder, Route, Routes};
use kye_runtime::Config;
use kye_runtime::Runtime;
use kye_runtime::{Context, Error};
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
use serde_json::{json, Value};

pub const SCHEMA: &str = r#"
Pokemon(id: Number)(name) {
  name: String
  weight: Number
  types+: String
  assert weight > 0
}
"#;

pub fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("reliability.kye", SCHEMA).expect("schema compiles"))
}

/// The PokeAPI-shaped document the server holds for `id`.
pub fn doc(id: i64) -> Value {
    let types: Vec<Value> = ["grass", "poison", "fire"][..(1 + id as usize % 3)]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"slot": i + 1, "type": {"name": t, "url": format!("{{base}}/type/{t}/")}}))
        .collect();
    json!({
        "id": id,
        "name": format!("mon-{id}"),
        "weight": 10 + id,
        "height": 7,
        "order": id,
        "types": types,
        "moves": [{"move": {"name": "tackle", "url": "{base}/move/33/"}}],
    })
}

/// The server for ids `1..=keys`: [`doc`]s made on request, each after 1.5 ms, so a fetch
/// takes long enough for a kill or a second process to land mid-run. The wait is a blocking
/// sleep (the server answers one request at a time, as the kill tests need), so serve these
/// routes with `TestServer::start_on_thread`, never on a test's own runtime.
pub fn slow_pokemon_routes(keys: i64) -> Routes {
    Routes::new().generate("/pokemon/", move |rest| {
        let id: i64 = rest.trim_end_matches('/').parse().ok()?;
        (1..=keys).contains(&id).then(|| {
            std::thread::sleep(Duration::from_micros(1500));
            Route::json(doc(id).to_string())
        })
    })
}

/// What the store must hold for a valid `id`: the mapping of [`doc`].
pub fn expected_record(id: i64) -> Value {
    let d = doc(id);
    json!({
        "id": id,
        "name": d["name"],
        "weight": d["weight"],
        "types": d["types"].as_array().unwrap().iter().map(|t| t["type"]["name"].clone()).collect::<Vec<_>>(),
    })
}

fn base(ctx: &Context) -> Result<String, Error> {
    ctx.config_str("rel.base_url")
        .ok_or_else(|| Error::permanent("rel.base_url is not configured"))
}

/// Maps the document onto the model, passing values through unchanged (a bad value is
/// validation's business).
fn pokemon_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let doc = ctx
            .get_json_value(&format!("{}/pokemon/{id}/", base(&ctx)?))
            .await?;
        let types = doc["types"].as_array().map(|ts| {
            ts.iter()
                .map(|t| t["type"]["name"].clone())
                .collect::<Vec<_>>()
        });
        Ok(Some(json!({
            "id": doc["id"],
            "name": doc["name"],
            "weight": doc["weight"],
            "types": types,
        })))
    })
}

static POKEMON_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Pokemon", &["id"], "pokemon_by_id", pokemon_by_id)
        .doc("Pokémon by id.")
        .build();

pub fn registry() -> Registry {
    Registry::from_parts(
        [RegisteredModel::new(schema(), "Pokemon").expect("model")],
        [&POKEMON_BY_ID],
    )
    .expect("registry")
}

/// Quick retries and a short timeout so faults cost milliseconds.
pub fn config(base: &str, concurrency: usize) -> Config {
    let mut cfg = Config::from_toml_str(
        r#"
        [run]
        timeout = "300ms"
        max_attempts = 4
        backoff_base = "10ms"
        backoff_max = "40ms"
        max_body_size = "64KiB"
        grace_period = "1s"
        "#,
        None,
    )
    .expect("config");
    cfg.set("rel.base_url", base);
    cfg.set("run.concurrency", concurrency as i64);
    cfg
}

pub fn runtime(base: &str, db: &Path, concurrency: usize) -> Result<Runtime, Error> {
    Runtime::builder()
        .registry(registry())
        .config(config(base, concurrency))
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()
}

/// The tokio runtime a child-side test (a test binary started again for one test, see
/// [`spawn_self`]) runs its fetch on: multi-threaded, two workers.
pub fn child_tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The name libtest knows a test of this binary by (`runtime_pipeline::child_fetch`): the
/// calling module's `module_path!()` without the binary's own name, then `name`. Child-process
/// tests start their own binary again with `--exact` and this name.
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_binary, module)) => format!("{module}::{name}"),
        None => name.to_string(),
    }
}

/// Starts this test binary again running only `test_name` (see [`test_name`]): a child-side helper, marked
/// `#[ignore = "child process helper"]` so that a normal run never counts it as a passing
/// test, and which does nothing unless `env` is set.
pub fn spawn_self(test_name: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--exact",
        test_name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

/// Row counts straight from the SQLite file, bypassing kye: (parent rows, distinct ids,
/// child rows, `PRAGMA integrity_check` result).
pub fn sqlite_facts(db: &Path) -> (i64, i64, i64, String) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let rows = one(r#"SELECT count(*) FROM "Pokemon""#);
    let distinct = one(r#"SELECT count(DISTINCT "id") FROM "Pokemon""#);
    let children = one(r#"SELECT count(*) FROM "Pokemon__types""#);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    (rows, distinct, children, check)
}

/// Child rows the store must hold for ids `1..=n` (each Pokémon has `1 + id % 3` types).
pub fn expected_children(ids: impl Iterator<Item = i64>) -> i64 {
    ids.map(|id| 1 + id % 3).sum()
}
