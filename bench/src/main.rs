//! kye's benchmarks against the tools people use today. Figures and how to read them:
//! `bench/README.md`. Everything runs on this machine in one go; each comparison runs both
//! sides in the same run and reports medians and ratios.
//!
//! ```text
//! bench/run.sh                      # builds (release), creates bench/.venv, runs everything
//! target/release/kye-bench run      # the same, once built
//! cargo run -p kye-bench -- run --smoke   # seconds: small N, Python peers only if the venv exists
//! ```
//!
//! Subcommands (`run` drives the others, each in a fresh process so peak RSS is per side):
//! - `serve`: a loopback PokeAPI (kye::testing) with N synthetic Pokémon
//!   (`examples/pokemon/synthetic.rs`) of PokeAPI's real sizes or of ~B bytes, pre-rendered so
//!   the server costs every client the same and little.
//! - `kye-fetch`: `Pokemon.id in 1..=N` through `kye::Runtime` into SQLite.
//! - `floor`: a bare reqwest client GETting the same URLs with the same concurrency,
//!   discarding the bodies.
//! - `overhead`: a fetcher returning a ready value (no network): registry lookup, validation
//!   and the SQLite store per key.
//! - `batch`: the same records from one loopback server one key a request or 50 a request
//!   (a batch fetcher, `#[kye::get(InBatch.id, batch = 50)]`): requests and wall time.
//! - `parse`: the ways of mapping one document, on the same documents in one process
//!   (`parse.rs`).
//! - `api [SECONDS] [CONNECTIONS]`: cached reads through `kye serve` against a bare axum
//!   handler, and the token lookup's cost (`api.rs`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kye::testing::{Fixtures, Route, TestServer};
use serde::Deserialize;
use serde_json::{json, Value};

mod api;
/// The Pokémon example's own mapping (for `kye-bench parse`).
#[path = "../../examples/pokemon/mapping.rs"]
#[allow(dead_code)]
mod mapping;
mod parse;
mod pgrun;
mod pgstore;
mod run;
mod scaleout;
/// PokeAPI-shaped documents at real size, made from the example's fixtures.
#[path = "../../examples/pokemon/synthetic.rs"]
mod synthetic;
mod transform;

use synthetic::{Sizes, Synthetic};

kye::models!(
    "../examples/pokemon/pokemon.kye",
    "overhead.kye",
    "batch.kye",
    "transform.kye"
);

// ---------------------------------------------------------------------------------------------
// Fetchers, written the way a user writes them.

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct ApiType {
    #[serde(rename = "type")]
    ty: Named,
}

#[derive(Deserialize)]
struct ApiAbility {
    ability: Named,
    is_hidden: bool,
}

#[derive(Deserialize)]
struct ApiStat {
    base_stat: f64,
    stat: Named,
}

/// The fields of PokeAPI's `/pokemon/{id}/` the model needs; the rest (mostly `moves`) is
/// skipped by serde without being built.
#[derive(Deserialize)]
struct ApiPokemon {
    id: i64,
    name: String,
    weight: Option<f64>,
    height: Option<f64>,
    base_experience: Option<f64>,
    order: Option<f64>,
    is_default: Option<bool>,
    species: Option<Named>,
    types: Vec<ApiType>,
    abilities: Vec<ApiAbility>,
    stats: Vec<ApiStat>,
}

/// PokeAPI's document mapped onto the model; a `null` stays `null`.
fn map_pokemon(p: ApiPokemon) -> Value {
    let stat = |name: &str| {
        p.stats
            .iter()
            .find(|s| s.stat.name == name)
            .map(|s| s.base_stat)
    };
    json!({
        "id": p.id,
        "name": p.name,
        "weight": p.weight,
        "height": p.height,
        "base_experience": p.base_experience,
        "types": p.types.iter().map(|t| t.ty.name.as_str()).collect::<Vec<_>>(),
        "abilities": p.abilities.iter().map(|a| a.ability.name.as_str()).collect::<Vec<_>>(),
        "hidden_abilities": p.abilities.iter().filter(|a| a.is_hidden).map(|a| a.ability.name.as_str()).collect::<Vec<_>>(),
        "order": p.order,
        "is_default": p.is_default,
        "species": p.species.as_ref().map(|s| s.name.as_str()),
        "hp": stat("hp"),
        "attack": stat("attack"),
        "defense": stat("defense"),
        "special_attack": stat("special-attack"),
        "special_defense": stat("special-defense"),
        "speed": stat("speed"),
    })
}

/// A Pokémon by id from the benchmark server (`bench.base_url`).
#[kye::get(Pokemon.id)]
async fn pokemon_by_id(id: i64, ctx: &kye::Context) -> kye::Result<Value> {
    let base = ctx
        .config_str("bench.base_url")
        .ok_or_else(|| kye::Error::permanent("bench.base_url is not configured"))?;
    let doc: ApiPokemon = ctx.get_json(&format!("{base}/pokemon/{id}/")).await?;
    Ok(map_pokemon(doc))
}

/// A ready value, no I/O: what is left is kye's own cost per key.
#[kye::get(Ready.id)]
async fn ready_by_id(id: i64) -> kye::Result<Value> {
    Ok(ready_value(id))
}

/// Every `Ready` id the benchmark's list server names (`bench.list_url`), 100 a page.
#[kye::list(Ready.id)]
async fn all_ready(ctx: &kye::Context, keys: kye::Keys<i64>) -> kye::Result<()> {
    let url = ctx
        .config_str("bench.list_url")
        .ok_or_else(|| kye::Error::permanent("bench.list_url is not configured"))?;
    let paging = kye::http::Paginator::offset("offset", "limit", 100)
        .items("ids")
        .total("count");
    let mut pages = ctx.pages(&url, &paging)?;
    while let Some(page) = pages.next().await? {
        for id in &page.items {
            let id = id
                .as_i64()
                .ok_or_else(|| kye::Error::permanent(format!("not an id: {id}")))?;
            keys.send(id).await?;
        }
    }
    Ok(())
}

/// The batch benchmark's fetcher of one key: `GET {bench.base_url}/one/{id}`.
#[kye::get(PerKey.id)]
async fn per_key(id: i64, ctx: &kye::Context) -> kye::Result<Value> {
    let base = ctx
        .config_str("bench.base_url")
        .ok_or_else(|| kye::Error::permanent("bench.base_url is not configured"))?;
    ctx.get_json(&format!("{base}/one/{id}")).await
}

/// The batch benchmark's batch fetcher: `GET {bench.base_url}/many?ids=1,2,...`, 50 a call.
#[kye::get(InBatch.id, batch = 50)]
async fn in_batch(ids: Vec<i64>, ctx: &kye::Context) -> kye::Result<Vec<Value>> {
    let base = ctx
        .config_str("bench.base_url")
        .ok_or_else(|| kye::Error::permanent("bench.base_url is not configured"))?;
    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
    ctx.get_json(&format!("{base}/many?ids={}", ids.join(",")))
        .await
}

/// The loopback server of the batch benchmark: `/one/{id}` answers the overhead record of
/// `id`, `/many?ids=1,2,...` an array of them; each answer after `latency` (a remote API's
/// round trip; zero for none).
pub(crate) fn batch_server(latency: Duration) -> AnyResult<TestServer> {
    let delayed = move |route: Route| {
        if latency.is_zero() {
            route
        } else {
            route.always(kye::testing::Fault::Stall(latency))
        }
    };
    let routes = kye::testing::Routes::new()
        .generate("/one/", move |rest| {
            let id: i64 = rest.parse().ok()?;
            Some(delayed(Route::json(ready_value(id).to_string())))
        })
        .generate_with_query("/many", move |_, query| {
            let ids = kye::testing::query_param(query, "ids")?;
            let records: Vec<Value> = ids
                .split(',')
                .filter_map(|i| i.parse().ok())
                .map(ready_value)
                .collect();
            Some(delayed(Route::json(Value::Array(records).to_string())))
        });
    Ok(TestServer::start_on_thread(routes)?)
}

/// `batch N key|batch [LATENCY_MS]`: the same N records from one loopback server (on a
/// thread of this process), one key a request (`PerKey.id in 1..=N`) or 50 keys a request
/// (`InBatch.id in 1..=N`), each answer after LATENCY_MS (default 0); prints the requests the
/// server saw and the wall time. Concurrency 16 (the default) on both sides.
fn batch(count: u64, side: &str, latency: Duration) -> AnyResult<()> {
    let model = match side {
        "key" => "PerKey",
        "batch" => "InBatch",
        other => return Err(format!("batch N key|batch, not {other}").into()),
    };
    let dir = tempfile::tempdir()?;
    let rt = tokio_rt()?;
    let server = batch_server(latency)?;
    let mut config = kye::Config::empty();
    config.set("bench.base_url", server.base_url());
    let start = Instant::now();
    let summary = rt.block_on(async {
        runtime(&dir.path().join("kye.db"), config)?
            .fetch(format!("{model}.id in 1..={count}"))
            .await
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
    })?;
    let secs = start.elapsed().as_secs_f64();
    if summary.counts.stored != count {
        return Err(format!("not everything was stored: {summary}").into());
    }
    println!(
        "RESULT side={side} latency_ms={} secs={secs:.4} keys={count} requests={} us_per_key={:.2} peak_rss_kib={}",
        latency.as_millis(),
        server.stats().requests(),
        secs * 1e6 / count as f64,
        peak_rss_kib()
    );
    Ok(())
}

/// A loopback list endpoint of `count` ids: `/ready/?offset=M&limit=N` answers
/// `{"count", "ids": [M+1, ...]}`.
fn list_server(count: u64) -> AnyResult<TestServer> {
    let routes = kye::testing::Routes::new().generate_with_query("/ready/", move |rest, query| {
        if !rest.is_empty() {
            return None;
        }
        let param =
            |name: &str| kye::testing::query_param(query, name).and_then(|v| v.parse::<u64>().ok());
        let offset = param("offset").unwrap_or(0).min(count);
        let end = (offset + param("limit").unwrap_or(100)).min(count);
        let ids: Vec<u64> = (offset + 1..=end).collect();
        Some(Route::json(
            json!({ "count": count, "ids": ids }).to_string(),
        ))
    });
    Ok(TestServer::start_on_thread(routes)?)
}

/// The record [`ready_by_id`] returns.
pub(crate) fn ready_value(id: i64) -> Value {
    json!({
        "id": id,
        "name": format!("pokemon-{id}"),
        "weight": 60 + id % 900,
        "height": 4 + id % 20,
        "base_experience": 112,
        "types": ["electric", "fairy"],
        "abilities": ["static", "lightning-rod"],
        "hidden_abilities": ["lightning-rod"],
        "order": id * 3,
        "is_default": true,
        "species": "pikachu",
        "hp": 35, "attack": 55, "defense": 40,
        "special_attack": 50, "special_defense": 50, "speed": 90,
    })
}

/// Microseconds per `validate_record` call on the overhead record (one thread, no store).
fn validate_only_us(count: u64) -> AnyResult<f64> {
    let schema = kye::lang::compile_str("overhead.kye", include_str!("../overhead.kye"))
        .map_err(|e| e.to_string())?;
    let values: Vec<Value> = (1..=1000).map(ready_value).collect();
    let start = Instant::now();
    for i in 0..count {
        let report = kye::lang::validate_record(&schema, "Ready", &values[(i % 1000) as usize]);
        if !report.is_valid() {
            return Err(format!("{:?}", report.errors).into());
        }
        std::hint::black_box(report);
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / count as f64)
}

// ---------------------------------------------------------------------------------------------
// Subcommands.

/// The workspace root (this crate lives in `bench/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Peak resident set size of this process so far (KiB), from /proc.
pub(crate) fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn tokio_rt() -> AnyResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Document sizes from the command line: `real` (PokeAPI's, 20–600 KB, mean ~250 KB) or a
/// byte count.
pub(crate) fn sizes_arg(s: &str) -> AnyResult<Sizes> {
    match s {
        "real" => Ok(Sizes::Real),
        n => Ok(Sizes::About(n.parse().map_err(|_| {
            format!("document size {n:?}: `real` or a number of bytes")
        })?)),
    }
}

/// `serve N SIZE`: prints `BASE <url>` once ready, serves until stdin closes. SIZE is `real`
/// or a byte count.
fn serve(count: u32, sizes: Sizes) -> AnyResult<()> {
    let fixtures = Fixtures::from_dir(workspace_root().join("examples/pokemon/fixtures"))?;
    let synthetic =
        Arc::new(Synthetic::new(&fixtures, sizes).ok_or("the fixtures hold no Pokémon template")?);
    // Render every document once, on both cores, then serve them as fixed routes: serving
    // costs a lookup and a write, the same for every client.
    type Rendered = Vec<(u32, String)>;
    let halves: Vec<std::thread::JoinHandle<Rendered>> = (0..2u32)
        .map(|half| {
            let synthetic = Arc::clone(&synthetic);
            std::thread::spawn(move || {
                (1..=count)
                    .filter(|id| id % 2 == half)
                    .map(|id| (id, synthetic.document(id)))
                    .collect()
            })
        })
        .collect();
    let mut fixed = fixtures.routes();
    // Sizes as served: the server puts its base URL in place of each `{base}`.
    let mut sizes: Vec<(usize, usize)> = Vec::with_capacity(count as usize);
    for half in halves {
        for (id, body) in half.join().map_err(|_| "rendering a document panicked")? {
            sizes.push((body.len(), body.matches("{base}").count()));
            // By id only: the fetchers ask by id (fixture names stay served from the fixtures).
            fixed.insert(format!("/pokemon/{id}/"), Route::json(body));
        }
    }
    let server = TestServer::start_on_thread(fixed)?;
    let grow = server.base_url().len() - "{base}".len();
    let served = sizes.iter().map(|(len, bases)| len + bases * grow);
    let bytes: usize = served.clone().sum();
    let largest = served.max().unwrap_or(0);
    println!(
        "BASE {} docs={count} mean_doc_bytes={} largest_doc_bytes={largest} pid={}",
        server.base_url(),
        bytes / count.max(1) as usize,
        std::process::id()
    );
    std::io::stdout().flush()?;
    // Until the driver closes our stdin.
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink)? > 0 {
        sink.clear();
    }
    Ok(())
}

/// GETs `/pokemon/1/..=/pokemon/{count}/` with `concurrency` requests in flight on one pooled
/// client; with `parse`, each body is also deserialized and mapped.
async fn fetch_all(base: &str, count: u32, concurrency: usize, parse: bool) -> AnyResult<()> {
    kye::http::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()?;
    let next = Arc::new(AtomicU64::new(1));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, base) = (client.clone(), Arc::clone(&next), base.to_string());
        workers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id > u64::from(count) {
                    return Ok::<_, String>(());
                }
                let url = format!("{base}/pokemon/{id}/");
                let resp = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("{url}: HTTP {}", resp.status()));
                }
                let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                if parse {
                    // What any Rust client of this API does: parse into the fields it needs
                    // and map them (then drop the result).
                    let doc: ApiPokemon =
                        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
                    std::hint::black_box(map_pokemon(doc));
                }
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// `floor BASE N CONCURRENCY [parse]`: the bare client; prints `RESULT secs=..`. With
/// `parse`, each body is also deserialized and mapped like kye's fetcher does.
fn floor(base: &str, count: u32, concurrency: usize, parse: bool) -> AnyResult<()> {
    let rt = tokio_rt()?;
    let start = Instant::now();
    rt.block_on(fetch_all(base, count, concurrency, parse))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT secs={secs:.4} docs={count} peak_rss_kib={}",
        peak_rss_kib()
    );
    Ok(())
}

fn runtime(db: &Path, config: kye::Config) -> AnyResult<kye::Runtime> {
    Ok(kye::Runtime::builder()
        .config(config)
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()?)
}

/// `kye-fetch BASE N CONCURRENCY DB`: `Pokemon.id in 1..=N` into SQLite; prints `RESULT ..`.
fn kye_fetch(base: &str, count: u32, concurrency: usize, db: &Path) -> AnyResult<()> {
    let mut cfg = kye::Config::empty();
    cfg.set("bench.base_url", base);
    cfg.set("run.concurrency", concurrency as i64);
    let rt = tokio_rt()?;
    let start = Instant::now();
    let summary = rt.block_on(async {
        runtime(db, cfg)?
            .fetch(format!("Pokemon.id in 1..={count}"))
            .await
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
    })?;
    let secs = start.elapsed().as_secs_f64();
    // The fixtures include a real Pokémon whose `base_experience` is null: quarantined.
    let c = summary.counts;
    if c.stored + c.rejected != u64::from(count) || c.stored + 5 < u64::from(count) {
        return Err(format!("not everything was stored: {summary}").into());
    }
    println!(
        "RESULT secs={secs:.4} docs={count} stored={} rejected={} store_secs={:.4} peak_rss_kib={}",
        c.stored,
        c.rejected,
        summary.store_time.as_secs_f64(),
        peak_rss_kib()
    );
    Ok(())
}

/// `overhead N [listed]`: `Ready.id in 1..=N` with a ready value; prints µs per key and peak
/// RSS. With `listed`, the keys come from `Ready`'s list function instead, paging through a
/// loopback list endpoint 100 ids at a time (the server runs on its own thread of this process).
fn overhead(count: u64, listed: bool) -> AnyResult<()> {
    let dir = tempfile::tempdir()?;
    let rt = tokio_rt()?;
    let server = if listed {
        Some(list_server(count)?)
    } else {
        None
    };
    let mut config = kye::Config::empty();
    let request = match &server {
        Some(s) => {
            config.set("bench.list_url", s.url("/ready/"));
            "Ready".to_string()
        }
        None => format!("Ready.id in 1..={count}"),
    };
    let before = peak_rss_kib();
    let start = Instant::now();
    let summary = rt.block_on(async {
        runtime(&dir.path().join("kye.db"), config)?
            .fetch(request)
            .await
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
    })?;
    let secs = start.elapsed().as_secs_f64();
    if summary.counts.stored != count {
        return Err(format!("not everything was stored: {summary}").into());
    }
    let peak = peak_rss_kib();
    let validate_us = validate_only_us(count.min(50_000))?;
    println!(
        "RESULT secs={secs:.4} keys={count} us_per_key={:.2} keys_per_sec={:.0} peak_rss_kib={peak} rss_before_kib={before} store_us={:.2} validate_only_us={validate_us:.2}",
        secs * 1e6 / count as f64,
        count as f64 / secs,
        summary.store_time.as_secs_f64() * 1e6 / count as f64,
    );
    Ok(())
}

fn usage() -> String {
    "usage: kye-bench run [--smoke] [--reps R] [--counts N,N] [--real-counts N,N|none] \
     [--example-before PATH] [--scale N,N] [--rows N] [--doc-bytes B] [--concurrency C] \
     [--only validate,fetch,scale]\n\
     \x20      kye-bench serve N real|BYTES | floor BASE N C [parse] | kye-fetch BASE N C DB | overhead N [listed] | batch N key|batch [LATENCY_MS] | pgstore N [URL] | transform N\n\
     \x20      kye-bench api [SECONDS] [CONNECTIONS]\n\
     \x20      kye-bench parse [--docs M] [--rounds R] [--size real|BYTES] [--only WAY]\n\
     \x20      kye-bench scaleout N LATENCY_MS [ROUNDS] [POSTGRES_URL]"
        .to_string()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> AnyResult<T> {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("missing or bad {what}\n{}", usage()).into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result =
        match args.first().map(String::as_str) {
            Some("serve") => arg(&args, 1, "N")
                .and_then(|n| serve(n, sizes_arg(&arg::<String>(&args, 2, "SIZE")?)?)),
            Some("floor") => arg::<String>(&args, 1, "BASE").and_then(|b| {
                let parse = args.get(4).is_some_and(|a| a == "parse");
                floor(&b, arg(&args, 2, "N")?, arg(&args, 3, "C")?, parse)
            }),
            Some("kye-fetch") => arg::<String>(&args, 1, "BASE").and_then(|b| {
                kye_fetch(
                    &b,
                    arg(&args, 2, "N")?,
                    arg(&args, 3, "C")?,
                    &arg::<PathBuf>(&args, 4, "DB")?,
                )
            }),
            Some("overhead") => arg(&args, 1, "N")
                .and_then(|n| overhead(n, args.get(2).is_some_and(|a| a == "listed"))),
            Some("batch") => arg(&args, 1, "N").and_then(|n| {
                let latency = match args.get(3) {
                    Some(_) => Duration::from_millis(arg(&args, 3, "LATENCY_MS")?),
                    None => Duration::ZERO,
                };
                batch(n, &arg::<String>(&args, 2, "SIDE")?, latency)
            }),
            Some("pgstore") => arg(&args, 1, "N").and_then(|n| {
                let url = args.get(2).cloned().unwrap_or_else(run::postgres_url);
                pgstore::pgstore(n, &url)
            }),
            Some("transform") => arg(&args, 1, "N").and_then(transform::transform),
            Some("scaleout") => arg(&args, 1, "N").and_then(|n| {
                let latency = Duration::from_millis(arg(&args, 2, "LATENCY_MS")?);
                let rounds = match args.get(3) {
                    Some(_) => arg(&args, 3, "ROUNDS")?,
                    None => 1,
                };
                let url = args.get(4).cloned().unwrap_or_else(run::postgres_url);
                scaleout::scaleout(n, latency, rounds, &url)
            }),
            Some("run") => run::run(&args[1..]),
            Some("api") => api::api(&args[1..]),
            Some("parse") => parse::parse(&args[1..]),
            _ => Err(usage().into()),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kye-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads lines from a child's stdout until one starts with `prefix`.
pub(crate) fn read_line_starting(
    out: &mut BufReader<std::process::ChildStdout>,
    prefix: &str,
    timeout: Duration,
) -> AnyResult<String> {
    let start = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            return Err(format!("child ended before printing {prefix}").into());
        }
        if line.starts_with(prefix) {
            return Ok(line.trim_end().to_string());
        }
        if start.elapsed() > timeout {
            return Err(format!("no {prefix} line within {timeout:?}").into());
        }
    }
}

/// Starts `kye-bench serve` as a child; returns it with its base URL.
pub(crate) fn start_server(
    count: u32,
    size: &str,
) -> AnyResult<(std::process::Child, String, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", &count.to_string(), size])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let line = read_line_starting(&mut out, "BASE ", Duration::from_secs(600))?;
    let mut parts = line.split_whitespace().skip(1);
    let base = parts.next().ok_or("BASE line without a URL")?.to_string();
    let rest: Vec<&str> = parts.collect();
    Ok((child, base, rest.join(" ")))
}
