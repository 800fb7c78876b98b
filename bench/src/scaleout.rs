//! `kye-bench scaleout N LATENCY_MS [ROUNDS] [URL]`: one queued run of `PerKey.id in 1..=N`
//! (through the PostgreSQL store's queue, issue 17) worked by 1, 2 and 4 workers, each a thread
//! with its own runtime, connections and executor (concurrency 8), against the loopback
//! server answering each key after LATENCY_MS; beside it the same fetch in one process
//! straight into PostgreSQL (no queue, concurrency 8): the queue's overhead. Each side in a
//! schema of its own, dropped afterwards. Prints one `RESULT` line per side and round.

use std::time::{Duration, Instant};

use crate::AnyResult;

const CONCURRENCY: i64 = 8;

fn schema_url(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}schema={schema}")
}

fn drop_schema(url: &str, schema: &str) {
    let Ok(spec) = kye::store::PgSpec::parse(url) else {
        return;
    };
    let mut c = postgres::Config::new();
    c.host(&spec.host)
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.database);
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        c.password(pw);
    }
    if let Ok(mut c) = c.connect(postgres::NoTls) {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}

fn runtime(store: &str, base: &str) -> AnyResult<kye::Runtime> {
    let mut config = kye::Config::empty();
    config.set("bench.base_url", base);
    config.set("run.concurrency", CONCURRENCY);
    Ok(kye::Runtime::builder()
        .config(config)
        .env(Vec::new())
        .store(store)
        .handle_ctrl_c(false)
        .build()?)
}

fn tokio() -> AnyResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Seconds for `workers` workers to do a queued run of `count` keys (from the first claim to
/// the run's end; enqueueing is timed apart).
fn queued(url: &str, base: &str, count: u64, workers: usize) -> AnyResult<(f64, f64)> {
    let schema = format!("kye_bench_q_{}_{workers}", std::process::id());
    let store = schema_url(url, &schema);
    drop_schema(url, &schema);
    let result = (|| -> AnyResult<(f64, f64)> {
        let spec = kye::store::PgSpec::parse(&store)?;
        let t = tokio()?;
        let enqueued = Instant::now();
        let run = {
            let _guard = t.enter();
            let rt = runtime(&store, base)?;
            let queue = kye::Queue::open(&spec)?;
            t.block_on(queue.enqueue(
                &rt,
                &kye::FetchRequest::new(format!("PerKey.id in 1..={count}")),
            ))?
        };
        let enqueue_secs = enqueued.elapsed().as_secs_f64();
        let start = Instant::now();
        let threads: Vec<_> = (0..workers)
            .map(|i| {
                let (store, base, spec) = (store.clone(), base.to_string(), spec.clone());
                std::thread::spawn(move || -> Result<kye::WorkerReport, String> {
                    let t = tokio().map_err(|e| e.to_string())?;
                    let _guard = t.enter();
                    let rt = runtime(&store, &base).map_err(|e| e.to_string())?;
                    let queue = kye::Queue::open(&spec).map_err(|e| e.to_string())?;
                    let opts = kye::WorkerOptions {
                        name: format!("bench-{i}"),
                        exit_when_idle: true,
                        poll: Duration::from_millis(20),
                        ..kye::WorkerOptions::default()
                    };
                    t.block_on(rt.work(&queue, &opts))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut keys = 0;
        for th in threads {
            keys += th.join().map_err(|_| "a worker panicked")??.keys;
        }
        let secs = start.elapsed().as_secs_f64();
        if keys != count {
            return Err(format!("workers committed {keys} keys of {count}").into());
        }
        let queue = kye::Queue::open(&spec)?;
        let p = queue.progress(run)?.ok_or("the run is not queued")?;
        if !p.is_done() || p.counts.stored != count {
            return Err(format!("the run did not complete: {p:?}").into());
        }
        Ok((secs, enqueue_secs))
    })();
    drop_schema(url, &schema);
    result
}

/// Seconds for the same fetch in one process straight into PostgreSQL.
fn direct(url: &str, base: &str, count: u64) -> AnyResult<f64> {
    let schema = format!("kye_bench_d_{}", std::process::id());
    let store = schema_url(url, &schema);
    drop_schema(url, &schema);
    let result = (|| -> AnyResult<f64> {
        let t = tokio()?;
        let _guard = t.enter();
        let rt = runtime(&store, base)?;
        let start = Instant::now();
        let summary = t.block_on(rt.fetch(format!("PerKey.id in 1..={count}")))?;
        let secs = start.elapsed().as_secs_f64();
        if summary.counts.stored != count {
            return Err(format!("not everything was stored: {summary}").into());
        }
        Ok(secs)
    })();
    drop_schema(url, &schema);
    result
}

pub(crate) fn scaleout(count: u64, latency: Duration, rounds: u32, url: &str) -> AnyResult<()> {
    let server = crate::batch_server(latency)?;
    let base = server.base_url().to_string();
    for round in 1..=rounds {
        let secs = direct(url, &base, count)?;
        println!(
            "RESULT side=direct round={round} latency_ms={} keys={count} secs={secs:.3} keys_per_s={:.0}",
            latency.as_millis(),
            count as f64 / secs
        );
        for workers in [1, 2, 4] {
            let (secs, enqueue) = queued(url, &base, count, workers)?;
            println!(
                "RESULT side=queue workers={workers} round={round} latency_ms={} keys={count} secs={secs:.3} enqueue_secs={enqueue:.3} keys_per_s={:.0}",
                latency.as_millis(),
                count as f64 / secs
            );
        }
    }
    Ok(())
}
