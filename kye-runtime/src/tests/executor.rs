//! Tests of the fetch step's executor (`exec/`) against a real loopback server: retries,
//! timeouts, Retry-After, limits, streaming without materialising keys, and stopping cleanly.
//! Unit tests, because the executor is private to the crate; they live outside `exec/` so that
//! the executor itself names neither configuration nor the test server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::exec::{ExecSettings, ExecStats, Executor, Finished, Outcome, Shutdown, Sink, Work};
use crate::testing::{Fault, Route, Routes, TestServer};
use crate::{Context, ErrorClass};

#[derive(Debug)]
struct Job {
    fetcher: &'static str,
    path: String,
}

impl Work for Job {
    fn fetcher(&self) -> &str {
        self.fetcher
    }
    fn model(&self) -> &str {
        "Pokemon"
    }
    fn key(&self) -> String {
        self.path.clone()
    }
}

fn settings(toml: &str) -> ExecSettings {
    ExecSettings::from_config(&Config::from_toml_str(toml, None).unwrap()).unwrap()
}

const FAST: &str = r#"
[run]
concurrency = 8
timeout = "400ms"
max_attempts = 3
backoff_base = "20ms"
backoff_max = "100ms"
grace_period = "2s"
"#;

type Results = HashMap<String, (Result<serde_json::Value, (ErrorClass, String)>, u32)>;

async fn run_paths(exec: &Executor, ctx: Context, paths: &[&str], base: &str) -> Results {
    let jobs: Vec<Job> = paths
        .iter()
        .map(|p| Job {
            fetcher: "get",
            path: format!("{base}{p}"),
        })
        .collect();
    let mut results = Results::new();
    exec.run(
        jobs,
        move |job: Arc<Job>, attempt| {
            let ctx = ctx.with_attempt(attempt);
            async move { ctx.get_json_value(&job.path).await }
        },
        |f: Finished<Job, serde_json::Value>, _follow: &mut Vec<Job>| {
            let path = f.item.path.rsplit_once("127.0.0.1").unwrap().1.to_string();
            let path = path[path.find('/').unwrap()..].to_string();
            let r = match f.outcome {
                Outcome::Done(v) => Ok(v),
                Outcome::Failed(e) => Err((e.class(), e.to_string())),
                Outcome::Interrupted => Err((ErrorClass::Retryable, "interrupted".into())),
            };
            results.insert(path, (r, f.attempts));
            Ok(())
        },
    )
    .await
    .unwrap();
    results
}

#[tokio::test]
async fn retryable_errors_are_retried_and_permanent_ones_are_not() {
    let doc = r#"{"id": 1}"#;
    let routes = Routes::new()
        .route("/ok/", Route::json(doc))
        .route(
            "/500-then-ok/",
            Route::json(doc).fail_first(2, Fault::Status(500)),
        )
        .route("/always-503/", Route::json(doc).always(Fault::Status(503)))
        .route(
            "/cut-then-ok/",
            Route::json(doc).fail_first(1, Fault::CloseMidBody),
        )
        .route(
            "/truncated-then-ok/",
            Route::json(doc).fail_first(1, Fault::TruncatedJson),
        )
        .route(
            "/stall/",
            Route::json(doc).always(Fault::Stall(Duration::from_secs(5))),
        )
        .route("/denied/", Route::text(403, "no"))
        .route(
            "/huge/",
            Route::json(doc).always(Fault::HugeBody { bytes: 2 << 20 }),
        );
    let server = TestServer::start(routes).await.unwrap();
    let ctx = Context::builder()
        .config(Config::from_toml_str(&format!("{FAST}max_body_size = \"1MiB\""), None).unwrap())
        .build()
        .unwrap();
    let exec = Executor::new(settings(FAST));
    let paths = [
        "/ok/",
        "/500-then-ok/",
        "/always-503/",
        "/cut-then-ok/",
        "/truncated-then-ok/",
        "/stall/",
        "/denied/",
        "/missing/",
        "/huge/",
    ];
    let r = run_paths(&exec, ctx, &paths, server.base_url()).await;
    assert_eq!(r.len(), paths.len());
    assert_eq!(r["/ok/"].1, 1);
    assert_eq!(r["/500-then-ok/"].0.as_ref().unwrap()["id"], 1);
    assert_eq!(r["/500-then-ok/"].1, 3);
    assert_eq!(r["/cut-then-ok/"].1, 2);
    assert!(r["/cut-then-ok/"].0.is_ok());
    assert_eq!(r["/truncated-then-ok/"].1, 2);
    assert!(r["/truncated-then-ok/"].0.is_ok());

    let (e, attempts) = (
        &r["/always-503/"].0.as_ref().unwrap_err(),
        r["/always-503/"].1,
    );
    assert_eq!((e.0, attempts), (ErrorClass::Retryable, 3));
    assert!(
        e.1.contains("gave up after 3 attempts") && e.1.contains("HTTP 503"),
        "{}",
        e.1
    );
    assert_eq!(server.requests("/always-503/"), 3);

    let (e, attempts) = (&r["/stall/"].0.as_ref().unwrap_err(), r["/stall/"].1);
    assert_eq!((e.0, attempts), (ErrorClass::Retryable, 3));
    assert!(
        e.1.contains("timed out after 400ms (run.timeout)"),
        "{}",
        e.1
    );

    for (path, class) in [
        ("/denied/", ErrorClass::Permanent),
        ("/missing/", ErrorClass::Missing),
        ("/huge/", ErrorClass::Permanent),
    ] {
        let (e, attempts) = (&r[path].0.as_ref().unwrap_err(), r[path].1);
        assert_eq!((e.0, attempts), (class, 1), "{path}: {}", e.1);
    }
    assert_eq!(server.requests("/denied/"), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_attempt() {
    let routes = Routes::new().route(
        "/limited/",
        Route::json("{}").fail_first(
            1,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        ),
    );
    let server = TestServer::start(routes).await.unwrap();
    let exec = Executor::new(settings(FAST));
    let start = Instant::now();
    let r = run_paths(&exec, Context::new(), &["/limited/"], server.base_url()).await;
    assert!(r["/limited/"].0.is_ok());
    assert_eq!(r["/limited/"].1, 2);
    // Backoff alone would be ≤ 100 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn per_host_rate_limit_spaces_requests() {
    let routes: Routes = (0..6)
        .map(|i| (format!("/p/{i}/"), Route::json("{}")))
        .collect();
    let server = TestServer::start(routes).await.unwrap();
    let port = server.addr().port();
    let config = Config::from_toml_str(
        &format!("[hosts.\"127.0.0.1:{port}\"]\nrate_limit = 10\nburst = 1\n"),
        None,
    )
    .unwrap();
    let ctx = Context::builder().config(config).build().unwrap();
    let exec = Executor::new(settings(FAST));
    let paths: Vec<String> = (0..6).map(|i| format!("/p/{i}/")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let start = Instant::now();
    let r = run_paths(&exec, ctx, &paths, server.base_url()).await;
    assert!(r.values().all(|(v, _)| v.is_ok()));
    // 1 at once, then one every 100 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(480),
        "{:?}",
        start.elapsed()
    );
}

#[derive(Debug)]
struct Num(u64, &'static str);
impl Work for Num {
    fn fetcher(&self) -> &str {
        self.1
    }
    fn model(&self) -> &str {
        "N"
    }
    fn key(&self) -> String {
        self.0.to_string()
    }
}

#[tokio::test]
async fn keys_stream_with_a_bounded_window() {
    // A lazy range: the executor must pull keys only as slots free up.
    let pulled = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    let keys = (1..=200_000u64).map(move |n| {
        p.fetch_add(1, Ordering::Relaxed);
        Num(n, "f")
    });
    let exec = Executor::new(settings("[run]\nconcurrency = 32"));
    let (inf, maxf) = (in_flight.clone(), max_in_flight.clone());
    let mut written = 0u64;
    let mut sum = 0u64;
    let mut max_gap = 0usize;
    let stats = exec
        .run(
            keys,
            move |n: Arc<Num>, _| {
                let (inf, maxf) = (inf.clone(), maxf.clone());
                async move {
                    let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                    maxf.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inf.fetch_sub(1, Ordering::SeqCst);
                    Ok(n.0 * 2)
                }
            },
            |f: Finished<Num, u64>, _: &mut Vec<Num>| {
                written += 1;
                if let Outcome::Done(v) = f.outcome {
                    sum += v;
                }
                max_gap = max_gap.max(pulled.load(Ordering::Relaxed) - written as usize);
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(stats.done, 200_000);
    assert_eq!(written, 200_000);
    assert_eq!(sum, 200_000 * 200_001);
    assert!(max_in_flight.load(Ordering::SeqCst) <= 32);
    // Pulled ahead of what was written, at most: a refilled queue for the workers (64 items,
    // or the window when larger), plus what the previous refill left queued, in flight or
    // finished and waiting for the sink (at most one queue and one window).
    assert!(max_gap <= 2 * 64 + 32, "pulled ahead by {max_gap}");
}

#[tokio::test]
async fn per_fetcher_concurrency_is_limited() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let exec = Executor::new(settings(
        "[run]\nconcurrency = 16\n[fetchers.slow]\nconcurrency = 2\n",
    ));
    let keys = (0..40u64).map(|n| Num(n, if n % 2 == 0 { "slow" } else { "fast" }));
    let (inf, maxf) = (in_flight.clone(), max_in_flight.clone());
    let stats = exec
        .run(
            keys,
            move |n: Arc<Num>, _| {
                let (inf, maxf) = (inf.clone(), maxf.clone());
                async move {
                    if n.1 == "slow" {
                        let now = inf.fetch_add(1, Ordering::SeqCst) + 1;
                        maxf.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        inf.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok(())
                }
            },
            |_: Finished<Num, ()>, _: &mut Vec<Num>| Ok(()),
        )
        .await
        .unwrap();
    assert_eq!(stats.done, 40);
    assert_eq!(max_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn follow_ups_pushed_by_the_sink_are_run() {
    let exec = Executor::new(settings("[run]\nconcurrency = 4"));
    let mut seen = Vec::new();
    exec.run(
        vec![Num(1, "f")],
        |n: Arc<Num>, _| async move { Ok(n.0) },
        |f: Finished<Num, u64>, follow: &mut Vec<Num>| {
            let Outcome::Done(v) = f.outcome else {
                panic!("unexpected outcome")
            };
            seen.push(v);
            if v < 4 {
                follow.push(Num(v + 1, "f"));
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn stop_lets_in_flight_finish_and_takes_no_new_keys() {
    let shutdown = Shutdown::new();
    let exec = Executor::new(settings("[run]\nconcurrency = 4\ngrace_period = \"5s\""))
        .with_shutdown(shutdown.clone());
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let sd = shutdown.clone();
    let mut done = 0;
    let mut interrupted = 0;
    let stats = exec
        .run(
            (0..1000u64).map(|n| Num(n, "f")),
            move |n: Arc<Num>, _| {
                let st = st.clone();
                let sd = sd.clone();
                async move {
                    if st.fetch_add(1, Ordering::SeqCst) == 5 {
                        sd.trigger();
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Ok(n.0)
                }
            },
            |f: Finished<Num, u64>, _: &mut Vec<Num>| {
                match f.outcome {
                    Outcome::Done(_) => done += 1,
                    Outcome::Interrupted => interrupted += 1,
                    Outcome::Failed(e) => panic!("{e}"),
                }
                Ok(())
            },
        )
        .await
        .unwrap();
    assert!(stats.stopped);
    assert_eq!(
        interrupted, 0,
        "in-flight keys finish within the grace period"
    );
    assert!((6..=12).contains(&done), "done {done}");
    assert_eq!(stats.started, done as u64);
}

#[tokio::test]
async fn grace_period_over_records_in_flight_as_interrupted() {
    let shutdown = Shutdown::new();
    let exec = Executor::new(settings(
        "[run]\nconcurrency = 3\ngrace_period = \"100ms\"\ncall_timeout = \"30s\"",
    ))
    .with_shutdown(shutdown.clone());
    let sd = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sd.trigger();
    });
    let mut outcomes = Vec::new();
    let start = Instant::now();
    let stats = exec
        .run(
            (0..10u64).map(|n| Num(n, "f")),
            |_: Arc<Num>, _| async move {
                tokio::time::sleep(Duration::from_secs(20)).await;
                Ok(())
            },
            |f: Finished<Num, ()>, _: &mut Vec<Num>| {
                outcomes.push((f.item.0, matches!(f.outcome, Outcome::Interrupted)));
                Ok(())
            },
        )
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(stats.interrupted, 3);
    outcomes.sort();
    assert_eq!(outcomes, vec![(0, true), (1, true), (2, true)]);
}

#[tokio::test]
async fn a_writer_error_stops_the_run_and_is_returned() {
    let exec = Executor::new(settings("[run]\nconcurrency = 2"));
    let mut calls = 0;
    let err = exec
        .run(
            (0..100u64).map(|n| Num(n, "f")),
            |n: Arc<Num>, _| async move { Ok(n.0) },
            |_: Finished<Num, u64>, _: &mut Vec<Num>| {
                calls += 1;
                if calls == 3 {
                    Err(crate::Error::permanent("disk full"))
                } else {
                    Ok(())
                }
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "disk full");
    assert_eq!(calls, 3);
}

#[tokio::test]
async fn a_panicking_fetcher_fails_its_key_only() {
    let exec = Executor::new(settings("[run]\nconcurrency = 2"));
    let mut failed = Vec::new();
    let stats = exec
        .run(
            (0..5u64).map(|n| Num(n, "f")),
            |n: Arc<Num>, _| async move {
                if n.0 == 3 {
                    panic!("boom at 3");
                }
                Ok(n.0)
            },
            |f: Finished<Num, u64>, _: &mut Vec<Num>| {
                if let Outcome::Failed(e) = f.outcome {
                    failed.push((f.item.0, e.to_string()));
                }
                Ok(())
            },
        )
        .await
        .unwrap();
    assert_eq!(stats.done, 4);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 3);
    assert!(failed[0].1.contains("boom at 3"), "{}", failed[0].1);
}

#[tokio::test]
async fn a_second_stop_interrupts_in_flight_keys_at_once() {
    let shutdown = Shutdown::new();
    let exec = Executor::new(settings(
        "[run]\nconcurrency = 2\ngrace_period = \"30s\"\ncall_timeout = \"60s\"",
    ))
    .with_shutdown(shutdown.clone());
    let sd = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sd.trigger();
        tokio::time::sleep(Duration::from_millis(50)).await;
        sd.trigger();
    });
    let start = Instant::now();
    let mut interrupted = 0;
    let stats = exec
        .run(
            (0..10u64).map(|n| Num(n, "f")),
            |_: Arc<Num>, _| async move {
                tokio::time::sleep(Duration::from_secs(20)).await;
                Ok(())
            },
            |f: Finished<Num, ()>, _: &mut Vec<Num>| {
                if matches!(f.outcome, Outcome::Interrupted) {
                    interrupted += 1;
                }
                Ok(())
            },
        )
        .await
        .unwrap();
    // Well before the 30 s grace period.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((stats.interrupted, interrupted), (2, 2));
    assert!(stats.stopped);
    assert_eq!(stats.started, 2);
}

/// A sink that records the order of `finished` and `idle` calls.
#[derive(Default, Clone)]
struct Recording {
    events: Arc<std::sync::Mutex<Vec<&'static str>>>,
    fail_idle_after: Option<usize>,
}

impl Recording {
    fn count(&self, what: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| **e == what)
            .count()
    }
}

impl Sink<Job, u32> for Recording {
    fn finished(&mut self, _f: Finished<Job, u32>, _follow: &mut Vec<Job>) -> crate::Result<()> {
        self.events.lock().unwrap().push("finished");
        Ok(())
    }

    fn idle(
        &mut self,
        _follow: &mut Vec<Job>,
        _quiet: bool,
    ) -> crate::Result<Option<std::time::Duration>> {
        let idles = self.count("idle");
        self.events.lock().unwrap().push("idle");
        match self.fail_idle_after {
            Some(n) if idles >= n => Err(crate::Error::permanent("disk full")),
            _ => Ok(None),
        }
    }
}

fn jobs(n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| Job {
            fetcher: "get",
            path: format!("/{i}"),
        })
        .collect()
}

/// Runs `n` items that each sleep `ms` through `exec` into `sink`.
async fn run_sleepers(
    exec: &Executor,
    n: usize,
    ms: u64,
    sink: Recording,
) -> crate::Result<ExecStats> {
    exec.run(
        jobs(n),
        move |_job: Arc<Job>, _attempt| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(1u32)
        },
        sink,
    )
    .await
}

#[tokio::test]
async fn the_sink_hears_idle_before_each_wait_and_gets_every_item() {
    let exec = Executor::new(settings(FAST));
    let sink = Recording::default();
    // Each call takes a while, so the executor waits between finished items.
    let stats = run_sleepers(&exec, 12, 5, sink.clone()).await.unwrap();
    assert_eq!(stats.done, 12);
    assert_eq!(sink.count("finished"), 12);
    // It waited, and told the sink first each time.
    assert_eq!(sink.events.lock().unwrap().first(), Some(&"idle"));
    assert!(sink.count("idle") >= 2, "{:?}", sink.events);
}

#[tokio::test]
async fn an_idle_error_stops_the_run_and_is_returned() {
    let mut settings = settings(FAST);
    settings.concurrency = 1;
    let exec = Executor::new(settings);
    let sink = Recording {
        fail_idle_after: Some(2),
        ..Recording::default()
    };
    let err = run_sleepers(&exec, 50, 2, sink.clone()).await.unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    let finished = sink.count("finished");
    assert!(
        finished < 50,
        "the run went on after the error: {finished} finished"
    );
}
