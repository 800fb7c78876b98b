//! `kye-bench api [SECONDS] [CONNECTIONS]`: cached reads through `kye serve` against the floor
//! of a bare axum handler answering the same bytes, on loopback, `CONNECTIONS` (64) keep-alive
//! connections for `SECONDS` (5) a side, twice each, interleaved (floor, kye, floor, kye). Also
//! the cost of the per-request token lookup (SHA-256 + an indexed SQLite read) in µs.
//!
//! Server and load generator share the machine (each on its own tokio runtime with two
//! workers), so the floor pays the same client cost as kye does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kye::store::open_server_store;
use kye::{Runtime, ServeOptions, Server};

use crate::AnyResult;

/// One side's figures.
struct Load {
    requests: u64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU (user + system) of the whole process per request, µs: server and load generator
    /// together, so the difference between the sides is the servers' difference.
    cpu_us: f64,
}

/// `CONNECTIONS` clients GETting `url` for `secs`; every answer must be 200 with `expect`.
fn load(
    url: &str,
    token: Option<&str>,
    secs: f64,
    connections: usize,
    expect: &[u8],
) -> AnyResult<Load> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .no_proxy()
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_before = crate::pgstore::cpu_secs();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (client, stop) = (client.clone(), stop.clone());
            let (url, token, expect) =
                (url.to_string(), token.map(str::to_string), expect.to_vec());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let mut req = client.get(&url);
                    if let Some(tok) = &token {
                        req = req.bearer_auth(tok);
                    }
                    let resp = req.send().await.map_err(|e| e.to_string())?;
                    if resp.status() != 200 {
                        return Err(format!("HTTP {}", resp.status()));
                    }
                    let body = resp.bytes().await.map_err(|e| e.to_string())?;
                    if !expect.is_empty() && body.as_ref() != expect.as_slice() {
                        return Err("unexpected body".to_string());
                    }
                    lat.push(t.elapsed());
                }
                Ok::<_, String>(lat)
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = crate::pgstore::cpu_secs() - cpu_before;
        all.sort();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Ok(Load {
            requests: all.len() as u64,
            per_sec: all.len() as f64 / elapsed,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            cpu_us: cpu * 1e6 / (all.len().max(1) as f64),
        })
    })
}

/// A server runtime of its own, two workers.
fn server_runtime() -> AnyResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub fn api(args: &[String]) -> AnyResult<()> {
    kye::http::install_crypto_provider();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let connections: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("kye.db");
    let spec: kye::store::StoreSpec = format!("sqlite:{}", db.display()).parse()?;

    // kye serve with one stored `Ready` record (fetched once through its fetcher).
    let server_rt = server_runtime()?;
    let mut config = kye::Config::from_toml_str(
        "[roles.bench]\nread = [\"*\"]\nfetch = [\"*\"]\n[serve]\nrate_limit = 100000000\n",
        None,
    )?;
    config.set("run.concurrency", 4i64);
    let runtime = Runtime::builder()
        .config(config)
        .env(Vec::new())
        .store_spec(spec.clone())
        .handle_ctrl_c(false)
        .build()?;
    let mut store = open_server_store(&spec)?;
    let token = Server::issue_token(store.as_mut(), "bench", "bench", None)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options =
        ServeOptions::new("127.0.0.1:0".parse()?).with_config(runtime.context().settings())?;
    let server = server_rt.block_on(Server::bind(runtime, store, options))?;
    let kye_url = format!(
        "http://{}/v1/models/Ready/records?id=1",
        server.local_addr()?
    );
    let served = server_rt.spawn(server.run_until(async move {
        let _ = stop_rx.await;
    }));
    let first = get_text(&kye_url, &token)?;
    if !first.contains("\"fetched\"") {
        return Err(format!("the first read did not fetch: {first}").into());
    }
    let cached = get_text(&kye_url, &token)?;
    // The floor answers these very bytes.
    let body = cached.into_bytes();

    // The floor: a bare axum handler returning the same bytes.
    let floor_rt = server_runtime()?;
    let floor_body = body.clone();
    let listener = floor_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let floor_url = format!("http://{}/", listener.local_addr()?);
    floor_rt.spawn(async move {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let b = floor_body.clone();
                async move { ([("content-type", "application/json")], b) }
            }),
        );
        let _ = axum::serve(listener, app).await;
    });

    // Token lookup cost: SHA-256 of the token plus the indexed read the server makes.
    let mut lookups = open_server_store(&spec)?;
    let hash = lookups.tokens()?[0].hash.clone();
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        let _ = lookups.token_by_hash(&hash)?;
    }
    let lookup_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    // The read a cached answer makes: when the record was stored, then the record.
    let reader = kye::store::open_store_read_only(&spec)?;
    let key = kye::store::IndexKey::single("id", 1);
    let t = Instant::now();
    for _ in 0..n {
        let _ = reader.last_stored("Ready", &key)?;
        let _ = reader.record("Ready", &key)?;
    }
    let read_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);

    println!("## Cached reads: kye serve vs a bare axum handler ({connections} connections, {secs} s a side)\n");
    println!("| side | requests | requests/s | p50 ms | p99 ms | CPU µs/request |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut floor_rates = Vec::new();
    let mut kye_rates = Vec::new();
    for round in 0..2 {
        let f = load(&floor_url, None, secs, connections, &body)?;
        println!(
            "| floor (bare axum), run {} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
            round + 1,
            f.requests,
            f.per_sec,
            f.p50_ms,
            f.p99_ms,
            f.cpu_us
        );
        floor_rates.push(f.per_sec);
        // kye's body carries the record's age: a new second changes it, so kye's side checks
        // the status and reads the body without comparing it.
        let k = load_kye(&kye_url, &token, secs, connections)?;
        println!(
            "| kye serve, run {} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
            round + 1,
            k.requests,
            k.per_sec,
            k.p50_ms,
            k.p99_ms,
            k.cpu_us
        );
        kye_rates.push(k.per_sec);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "\nkye / floor requests/s: {:.0}%; per request: token lookup {lookup_us:.1} µs, \
         record read (last_stored + record) {read_us:.1} µs",
        100.0 * mean(&kye_rates) / mean(&floor_rates)
    );
    let _ = stop_tx.send(());
    let _ = server_rt.block_on(served);
    Ok(())
}

fn load_kye(url: &str, token: &str, secs: f64, connections: usize) -> AnyResult<Load> {
    load(url, Some(token), secs, connections, &[])
}

/// GET with a bearer token, on a throwaway runtime.
fn get_text(url: &str, token: &str) -> AnyResult<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await?;
        Ok(resp.text().await?)
    })
}
