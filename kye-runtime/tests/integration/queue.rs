//! Queued runs through PostgreSQL (issue 17): a run's keys enqueued in batches and worked by
//! one or several workers (threads with runtimes and connections of their own, and child
//! processes killed with SIGKILL mid-batch), references followed into the same run once each,
//! a worker whose lease expired refused at commit. Upstream requests are counted per key, so
//! "every key exactly once" is what the source saw. Each test in a throwaway schema of
//! `KYE_TEST_POSTGRES` (skipped with one printed reason when nothing answers, outside CI).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kye_lang::Schema;
use kye_runtime::store::{PgSpec, RunId, RunStatus};
use kye_runtime::testing::{Fault, FetcherBuilder, Route, Routes, TestServer};
use kye_runtime::{BatchEnd, Config, Context, Error, FetchFuture, Key, KeyValue, Queue};
use kye_runtime::{FetchRequest, FetcherRegistration, RegisteredModel, Registry, Runtime};
use kye_runtime::{KeySender, ListFuture, ListerRegistration};
use kye_runtime::{WorkerOptions, WorkerReport};
use serde_json::{json, Value};

use crate::common::{spawn_self, test_name};

const SCHEMA: &str = r#"
Cat(id: Number) {
  name: String
  toys: String*
}
Owner(id: Number) {
  name: String
  cats: Cat*
}
"#;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("queue.kye", SCHEMA).expect("test schema compiles"))
}

fn fetch_json(key: &Key, ctx: Context, path: &'static str) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let base = ctx
            .config_str("test.base_url")
            .ok_or_else(|| Error::permanent("test.base_url is not configured"))?;
        Ok(Some(
            ctx.get_json_value(&format!("{base}{path}{id}")).await?,
        ))
    })
}

fn cat(key: &Key, ctx: Context) -> FetchFuture {
    fetch_json(key, ctx, "/cats/")
}

fn owner(key: &Key, ctx: Context) -> FetchFuture {
    fetch_json(key, ctx, "/owners/")
}

static CAT: FetcherRegistration = FetcherBuilder::new("Cat", &["id"], "cat", cat).build();
static OWNER: FetcherRegistration = FetcherBuilder::new("Owner", &["id"], "owner", owner).build();

/// Every owner 1..=250, in pages of 30 with a pause between pages.
fn all_owners(_ctx: Context, keys: KeySender) -> ListFuture {
    Box::pin(async move {
        for page in (1..=250i64).collect::<Vec<_>>().chunks(30) {
            for id in page {
                keys.send(Key::single(*id)).await?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

/// Cats 1..=150, then the listing fails.
fn cats_then_fail(_ctx: Context, keys: KeySender) -> ListFuture {
    Box::pin(async move {
        for id in 1..=150i64 {
            keys.send(Key::single(id)).await?;
        }
        Err(Error::permanent("the listing endpoint broke at page 2"))
    })
}

static CATS: ListerRegistration = ListerRegistration {
    model: "Cat",
    identifier: &["id"],
    function: "cats_then_fail",
    module_path: "queue",
    file: "queue.rs",
    line: 1,
    doc: "",
    call: cats_then_fail,
};

static OWNERS: ListerRegistration = ListerRegistration {
    model: "Owner",
    identifier: &["id"],
    function: "all_owners",
    module_path: "queue",
    file: "queue.rs",
    line: 1,
    doc: "",
    call: all_owners,
};

fn registry() -> Registry {
    Registry::from_parts(
        ["Cat", "Owner"]
            .into_iter()
            .map(|m| RegisteredModel::new(schema(), m).expect("model in schema")),
        [&CAT, &OWNER],
    )
    .expect("registry")
    .with_listers([&OWNERS, &CATS])
    .expect("listers")
}

/// Requests per path (`/cats/7`), as the source saw them.
type Hits = Arc<Mutex<HashMap<String, u32>>>;

/// Owner n has cats n ..= n+9 (neighbours share cats: each cat is referenced up to ten
/// times); every answer waits `latency`.
fn routes(hits: &Hits, latency: Duration) -> Routes {
    routes_timed(hits, latency, &Times::default(), false)
}

/// When each request arrived.
type Times = Arc<Mutex<Vec<Instant>>>;

/// With `limited`, the first request for owner 1 is answered `429` with `Retry-After: 3`.
fn routes_timed(hits: &Hits, latency: Duration, times: &Times, limited: bool) -> Routes {
    let limit_once = Arc::new(std::sync::atomic::AtomicBool::new(limited));
    let count = |hits: &Hits, times: &Times, path: String| {
        times
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        *hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(path)
            .or_default() += 1;
    };
    let route = move |body: Value| {
        let r = Route::json(body.to_string());
        if latency.is_zero() {
            r
        } else {
            r.always(Fault::Stall(latency))
        }
    };
    let (h1, h2) = (hits.clone(), hits.clone());
    let (t1, t2) = (times.clone(), times.clone());
    Routes::new()
        .generate("/owners/", move |rest| {
            let id: u64 = rest.parse().ok()?;
            count(&h1, &t1, format!("/owners/{id}"));
            let cats: Vec<Value> = (id..id + 10).map(|c| json!(c)).collect();
            if id == 1 && limit_once.swap(false, Ordering::SeqCst) {
                return Some(Route::json("{}").always(Fault::RateLimited {
                    retry_after_secs: 3,
                }));
            }
            Some(route(
                json!({"id": id, "name": format!("owner-{id}"), "cats": cats}),
            ))
        })
        .generate("/cats/", move |rest| {
            let id: u64 = rest.parse().ok()?;
            count(&h2, &t2, format!("/cats/{id}"));
            Some(route(
                json!({"id": id, "name": format!("cat-{id}"), "toys": ["ball", format!("mouse-{id}")]}),
            ))
        })
}

fn url() -> String {
    std::env::var("KYE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A throwaway schema, or `None` when nothing answers (outside CI).
struct Pg {
    schema: String,
    c: postgres::Client,
}

impl Pg {
    fn new() -> Option<Pg> {
        static N: AtomicU32 = AtomicU32::new(0);
        let spec = PgSpec::parse(&url()).expect("KYE_TEST_POSTGRES parses");
        let mut c = postgres::Config::new();
        c.host(&spec.host)
            .port(spec.port)
            .user(&spec.user)
            .dbname(&spec.database)
            .connect_timeout(Duration::from_secs(5));
        if let Ok(pw) = std::env::var("PGPASSWORD") {
            c.password(pw);
        }
        match c.connect(postgres::NoTls) {
            Ok(c) => Some(Pg {
                schema: format!(
                    "kye_q_{}_{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ),
                c,
            }),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true: PostgreSQL at {} does not answer: {e}", url())
            }
            Err(e) => {
                eprintln!("skipping: nothing answers at {} ({e})", url());
                None
            }
        }
    }

    fn store_url(&self) -> String {
        store_url(&self.schema)
    }

    fn count(&mut self, sql: &str) -> i64 {
        let sql = sql.replace("S.", &format!("\"{}\".", self.schema));
        self.c
            .query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }
}

impl Pg {
    /// The first column of each row of `sql`, one line each.
    fn lines(&mut self, sql: &str) -> String {
        let sql = sql.replace("S.", &format!("\"{}\".", self.schema));
        match self.c.query(&sql, &[]) {
            Ok(rows) => rows
                .iter()
                .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("{sql}: {e}"),
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}

fn store_url(schema: &str) -> String {
    let base = url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}schema={schema}")
}

fn runtime(base: &str, store: &str) -> Runtime {
    runtime_with(base, store, "")
}

fn runtime_with(base: &str, store: &str, run: &str) -> Runtime {
    runtime_of(registry(), base, store, run)
}

fn runtime_of(registry: Registry, base: &str, store: &str, run: &str) -> Runtime {
    let config = Config::from_toml_str(
        &format!(
            r#"
            [test]
            base_url = "{base}"
            [run]
            concurrency = 8
            timeout = "5s"
            max_attempts = 3
            backoff_base = "10ms"
            backoff_max = "50ms"
            {run}
            "#
        ),
        None,
    )
    .expect("config");
    Runtime::builder()
        .registry(registry)
        .config(config)
        .env(Vec::new())
        .store(store)
        .handle_ctrl_c(false)
        .build()
        .expect("runtime")
}

fn queue(store: &str) -> Queue {
    let spec = PgSpec::parse(store).expect("spec");
    Queue::open(&spec).expect("queue")
}

fn options(name: &str) -> WorkerOptions {
    WorkerOptions {
        name: name.to_string(),
        exit_when_idle: true,
        lease: Duration::from_secs(5),
        poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    }
}

/// A worker on a thread of its own, with its own runtime and connections (as another process
/// would have), until no run has work.
fn worker_thread(base: String, store: String, name: &str) -> std::thread::JoinHandle<WorkerReport> {
    worker_thread_with(base, store, name, "")
}

fn worker_thread_with(
    base: String,
    store: String,
    name: &str,
    run: &'static str,
) -> std::thread::JoinHandle<WorkerReport> {
    let name = name.to_string();
    std::thread::spawn(move || {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let rt = runtime_with(&base, &store, run);
        let q = queue(&store);
        tokio.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), rt.work(&q, &options(&name)))
                .await
                .expect("worker finished within 120 s")
                .expect("worker")
        })
    })
}

/// Every key was asked of the source exactly once.
fn each_once(hits: &Hits, owners: std::ops::RangeInclusive<u64>) {
    let hits = hits.lock().unwrap();
    let cats = *owners.start()..=*owners.end() + 9;
    for id in owners {
        assert_eq!(hits.get(&format!("/owners/{id}")), Some(&1), "owner {id}");
    }
    for id in cats {
        assert_eq!(hits.get(&format!("/cats/{id}")), Some(&1), "cat {id}");
    }
}

/// The run's rows: every owner and cat stored once, child rows only of stored parents, one
/// outcome a key, every batch done once, the run completed with its batches' counts.
fn check_run(pg: &mut Pg, run: i64, owners: i64) {
    let cats = owners + 9;
    let (stored, expected) = (
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {run} AND status = 'stored'"
        )),
        owners + cats,
    );
    if stored != expected || pg.count(r#"SELECT count(*) FROM S."Owner""#) != owners {
        // What the queue and the keys say, so a failure here can be read from CI's log alone.
        panic!(
            "run {run}: {stored} keys stored of {expected}\nbatches:\n{}\nkeys not stored:\n{}",
            pg.lines(&format!(
                "SELECT id || ' ' || model || ' depth ' || depth || ' ' || state || ' attempts ' || attempts \
                 || ' worker ' || coalesce(worker, '-') || ' stored ' || stored || ' failed ' || failed \
                 || ' reason ' || coalesce(reason, '-') FROM S._kye_queue_batches WHERE run_id = {run} ORDER BY id"
            )),
            pg.lines(&format!(
                "SELECT status || ' x' || count(*) || ': ' || coalesce(min(reason), '-') FROM S._kye_keys \
                 WHERE run_id = {run} AND status <> 'stored' GROUP BY status"
            )),
        );
    }
    assert_eq!(pg.count(r#"SELECT count(*) FROM S."Owner""#), owners);
    assert_eq!(
        pg.count(r#"SELECT count(DISTINCT id) FROM S."Owner""#),
        owners
    );
    assert_eq!(pg.count(r#"SELECT count(*) FROM S."Cat""#), cats);
    assert_eq!(
        pg.count(r#"SELECT count(*) FROM S."Owner__cats""#),
        owners * 10
    );
    assert_eq!(pg.count(r#"SELECT count(*) FROM S."Cat__toys""#), cats * 2);
    assert_eq!(
        pg.count(r#"SELECT count(*) FROM S."Cat__toys" t WHERE NOT EXISTS (SELECT 1 FROM S."Cat" c WHERE c.id = t.id)"#),
        0,
        "orphan child rows"
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {run} AND status = 'stored'"
        )),
        owners + cats
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {run}"
        )),
        owners + cats
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_queue_batches WHERE run_id = {run} AND state <> 'done'"
        )),
        0
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT coalesce(sum(jsonb_array_length(keys)), 0)::bigint FROM S._kye_queue_batches WHERE run_id = {run}"
        )),
        owners + cats,
        "each key in one batch"
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {run} AND status = 'completed' \
             AND stored = {} AND failed = 0 AND ended_at IS NOT NULL",
            owners + cats
        )),
        1,
        "the run completed with its batches' counts"
    );
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

#[test]
fn one_worker_drains_a_run_with_references_followed_once() {
    let Some(mut pg) = Pg::new() else { return };
    let tokio = tokio();
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let store = pg.store_url();
    let rt = runtime(server.base_url(), &store);
    let q = queue(&store);
    let run = tokio
        .block_on(q.enqueue(&rt, &FetchRequest::new("Owner.id in 1..=150").follow(1)))
        .expect("enqueue");
    // Recorded, not fetched.
    assert_eq!(hits.lock().unwrap().len(), 0);
    let progress = q.progress(run).expect("progress").expect("a queued run");
    assert_eq!(
        (progress.state.as_str(), progress.queued, progress.keys),
        ("open", 2, 150)
    );
    let report = tokio
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), rt.work(&q, &options("solo"))).await
        })
        .expect("worker finished within 60 s")
        .expect("worker");
    assert_eq!(report.keys, 150 + 159, "{report:?}");
    assert_eq!((report.lost, report.released, report.gave_up), (0, 0, 0));
    each_once(&hits, 1..=150);
    check_run(&mut pg, run.0, 150);
    let info = rt
        .with_store(|s| s.run(run).expect("run"))
        .expect("run row");
    assert_eq!(info.status, RunStatus::Completed);
    assert_eq!(info.counts.stored, 309);
    let progress = q.progress(run).expect("progress").expect("a queued run");
    assert!(progress.is_done(), "{progress:?}");
    assert_eq!(progress.counts.stored, 309);
}

#[test]
fn three_workers_share_a_run_and_no_key_is_fetched_twice() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let server =
        TestServer::start_on_thread(routes(&hits, Duration::from_millis(5))).expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    let run = {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let _guard = tokio.enter();
        let rt = runtime(&base, &store);
        tokio
            .block_on(
                queue(&store).enqueue(&rt, &FetchRequest::new("Owner.id in 1..=400").follow(1)),
            )
            .expect("enqueue")
    };
    let workers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| worker_thread(base.clone(), store.clone(), n))
        .collect();
    let reports: Vec<WorkerReport> = workers
        .into_iter()
        .map(|w| w.join().expect("worker thread"))
        .collect();
    let keys: u64 = reports.iter().map(|r| r.keys).sum();
    assert_eq!(keys, 400 + 409, "{reports:?}");
    assert!(
        reports.iter().filter(|r| r.batches > 0).count() >= 2,
        "the batches were shared: {reports:?}"
    );
    each_once(&hits, 1..=400);
    check_run(&mut pg, run.0, 400);
}

#[test]
fn a_worker_whose_lease_expired_is_refused_at_commit_and_another_does_its_batch() {
    let Some(mut pg) = Pg::new() else { return };
    let tokio = tokio();
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let store = pg.store_url();
    let slow = runtime(server.base_url(), &store);
    let q = queue(&store);
    let run = tokio
        .block_on(q.enqueue(&slow, &FetchRequest::new("Owner.id in 1..=20")))
        .expect("enqueue");
    // The slow worker claims the batch under a short lease, then stalls past it.
    let lease = Duration::from_millis(300);
    let batch = q.claim("slow", lease).expect("claim").expect("a batch");
    assert_eq!(batch.keys.len(), 20);
    std::thread::sleep(lease * 2);
    // Another worker takes the expired batch and completes the run.
    let other = runtime(server.base_url(), &store);
    let q2 = queue(&store);
    let report = tokio
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), other.work(&q2, &options("fast"))).await
        })
        .expect("worker finished within 60 s")
        .expect("worker");
    assert_eq!((report.batches, report.keys), (1, 20), "{report:?}");
    // The slow worker's late commit is refused: nothing of it is written.
    let opts = WorkerOptions {
        lease,
        ..options("slow")
    };
    let end = tokio
        .block_on(slow.work_batch(&q, &batch, &opts))
        .expect("work");
    assert_eq!(end, BatchEnd::LeaseLost);
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {}",
            run.0
        )),
        20
    );
    assert_eq!(pg.count(r#"SELECT count(*) FROM S."Owner""#), 20);
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {} AND status = 'completed' AND stored = 20",
            run.0
        )),
        1
    );
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM S._kye_queue_batches WHERE state = 'done' AND worker = 'fast'"
        ),
        1
    );
}

/// Child side of the kill test: works the queue of `KYE_QUEUE_STORE` until killed.
#[test]
#[ignore = "child process helper"]
fn queue_child_worker() {
    let (Ok(store), Ok(base)) = (
        std::env::var("KYE_QUEUE_STORE"),
        std::env::var("KYE_QUEUE_BASE"),
    ) else {
        return;
    };
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let rt = runtime(&base, &store);
    let q = queue(&store);
    println!("worker ready");
    // With a grace period: stops on SIGTERM as `kye worker` does.
    let grace = std::env::var("KYE_QUEUE_GRACE_MS")
        .ok()
        .and_then(|g| g.parse().ok())
        .map(Duration::from_millis);
    let opts = WorkerOptions {
        lease: Duration::from_millis(800),
        signals: grace.is_some(),
        grace: grace.unwrap_or_default(),
        ..options("child")
    };
    let _ = tokio.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), rt.work(&q, &opts)).await
    });
}

#[test]
fn a_worker_killed_mid_batch_leaves_nothing_half_done_and_another_finishes_the_run() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    // Slow enough that the child is mid-batch when it is killed.
    let server =
        TestServer::start_on_thread(routes(&hits, Duration::from_millis(40))).expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    let run = {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let _guard = tokio.enter();
        let rt = runtime(&base, &store);
        tokio
            .block_on(
                queue(&store).enqueue(&rt, &FetchRequest::new("Owner.id in 1..=250").follow(1)),
            )
            .expect("enqueue")
    };
    let mut child = spawn_self(
        &test_name(module_path!(), "queue_child_worker"),
        &[
            ("KYE_QUEUE_STORE", store.clone()),
            ("KYE_QUEUE_BASE", base.clone()),
        ],
    );
    // Killed once it has committed a batch and holds another (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'done'");
        let held = pg.count(
            "SELECT count(*) FROM S._kye_queue_batches WHERE state = 'claimed' AND worker = 'child'",
        );
        if done >= 1 && held >= 1 {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("child output");
            panic!(
                "the child never got going: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed_mid = pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'claimed'");
    assert!(killed_mid >= 1, "a batch was in hand when the child died");
    // Another worker takes what is left, the killed one's batch once its lease expired.
    let report = worker_thread(base, store, "after")
        .join()
        .expect("worker thread");
    assert!(report.batches >= 1, "{report:?}");
    check_run(&mut pg, run.0, 250);
    // Keys of the killed batch may have been asked twice (fetched, never committed); none
    // was stored twice, and no key of a committed batch was fetched again.
    let hits = hits.lock().unwrap();
    let twice = hits.values().filter(|&&n| n > 1).count() as i64;
    assert!(twice <= 100 * killed_mid, "{twice} keys fetched twice");
}

#[test]
fn four_workers_together_keep_to_the_rate_of_the_host() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let times = Times::default();
    let server = TestServer::start_on_thread(routes_timed(&hits, Duration::ZERO, &times, false))
        .expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    // 100 requests a second for the whole fleet; each worker alone could go much faster.
    const RATE: &str = "rate_limit = 100\nburst = 5";
    let run = {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let _guard = tokio.enter();
        let rt = runtime_with(&base, &store, RATE);
        tokio
            .block_on(queue(&store).enqueue(&rt, &FetchRequest::new("Owner.id in 1..=400")))
            .expect("enqueue")
    };
    let workers: Vec<_> = ["r1", "r2", "r3", "r4"]
        .iter()
        .map(|n| worker_thread_with(base.clone(), store.clone(), n, RATE))
        .collect();
    let reports: Vec<WorkerReport> = workers
        .into_iter()
        .map(|w| w.join().expect("worker thread"))
        .collect();
    assert!(
        reports.iter().filter(|r| r.batches > 0).count() >= 2,
        "{reports:?}"
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {} AND status = 'completed' AND stored = 400",
            run.0
        )),
        1
    );
    let mut times = times.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 400);
    // After the burst, the combined rate stays within 10% of the configured one.
    let span = (times[399] - times[0]).as_secs_f64();
    let rate = (400.0 - 5.0) / span;
    assert!(rate <= 110.0, "{rate:.1} requests/s for 100/s configured");
    assert!(
        rate >= 60.0,
        "{rate:.1} requests/s: the budget starves the workers"
    );
    // No second of the run saw much more than the rate (and the burst).
    let most = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            times[i..]
                .iter()
                .take_while(|u| **u - *t < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most <= 115, "{most} requests in one second");
}

#[test]
fn a_429_one_worker_sees_pauses_every_worker() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let times = Times::default();
    let server = TestServer::start_on_thread(routes_timed(
        &hits,
        Duration::from_millis(120),
        &times,
        true,
    ))
    .expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    let run = {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let _guard = tokio.enter();
        let rt = runtime(&base, &store);
        tokio
            .block_on(queue(&store).enqueue(&rt, &FetchRequest::new("Owner.id in 1..=800")))
            .expect("enqueue")
    };
    let workers: Vec<_> = ["p1", "p2", "p3", "p4"]
        .iter()
        .map(|n| worker_thread(base.clone(), store.clone(), n))
        .collect();
    let reports: Vec<WorkerReport> = workers
        .into_iter()
        .map(|w| w.join().expect("worker thread"))
        .collect();
    assert!(
        reports.iter().filter(|r| r.batches > 0).count() >= 2,
        "{reports:?}"
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {} AND status = 'completed' AND stored = 800",
            run.0
        )),
        1
    );
    // Owner 1 was asked twice (429, then after the pause); while the pause held, no worker
    // sent anything once it had looked at the shared budget (within a second).
    assert_eq!(hits.lock().unwrap().get("/owners/1"), Some(&2));
    let mut times = times.lock().unwrap().clone();
    times.sort();
    let first = times[0];
    let during = times
        .iter()
        .filter(|t| {
            let at = **t - first;
            at > Duration::from_millis(1300) && at < Duration::from_millis(2800)
        })
        .count();
    assert_eq!(during, 0, "requests while the fleet was paused");
}

/// A child worker given SIGTERM while it holds its first batch, with `grace`: returns the
/// schema, the run and how long the child took to exit after the signal.
#[cfg(unix)]
fn sigterm_case(grace: Duration) -> Option<(Pg, i64, Duration)> {
    let mut pg = Pg::new()?;
    let hits = Hits::default();
    let server =
        TestServer::start_on_thread(routes(&hits, Duration::from_millis(60))).expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    let run = {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let _guard = tokio.enter();
        let rt = runtime(&base, &store);
        tokio
            .block_on(queue(&store).enqueue(&rt, &FetchRequest::new("Owner.id in 1..=300")))
            .expect("enqueue")
    };
    let mut child = spawn_self(
        &test_name(module_path!(), "queue_child_worker"),
        &[
            ("KYE_QUEUE_STORE", store),
            ("KYE_QUEUE_BASE", base),
            ("KYE_QUEUE_GRACE_MS", grace.as_millis().to_string()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'claimed'") == 0 {
        assert!(Instant::now() < deadline, "the child never claimed a batch");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Some keys in flight, not the whole batch done.
    std::thread::sleep(Duration::from_millis(150));
    let signalled = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "the child did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exited.success(), "{exited:?}");
    Some((pg, run.0, signalled.elapsed()))
}

#[cfg(unix)]
#[test]
fn sigterm_lets_the_batch_in_hand_finish_and_claims_nothing_more() {
    let Some((mut pg, run, _)) = sigterm_case(Duration::from_secs(20)) else {
        return;
    };
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'claimed'"),
        0
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'done'"),
        1,
        "the batch in hand was committed"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'queued'"),
        2,
        "nothing more was claimed"
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {run}"
        )),
        100
    );
}

#[cfg(unix)]
#[test]
fn sigterm_past_the_grace_period_puts_the_batch_back_unwritten() {
    let Some((mut pg, run, took)) = sigterm_case(Duration::ZERO) else {
        return;
    };
    // 100 keys at 60 ms, 8 at once, take about 750 ms: the batch was cut short.
    assert!(took < Duration::from_millis(700), "{took:?}");
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM S._kye_queue_batches WHERE state = 'queued' AND attempts = 0 \
             AND worker IS NULL AND reason = 'the worker stopped before finishing it'"
        ),
        1,
        "the batch was put back, its claim not counted"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state <> 'queued'"),
        0
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {run}"
        )),
        0
    );
    assert_eq!(pg.count(r#"SELECT count(*) FROM S."Owner""#), 0);
}

#[test]
fn a_list_functions_keys_are_queued_as_its_pages_arrive() {
    let Some(mut pg) = Pg::new() else { return };
    let tokio = tokio();
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let store = pg.store_url();
    let rt = runtime(server.base_url(), &store);
    let q = queue(&store);
    let run = tokio
        .block_on(q.enqueue(&rt, &FetchRequest::new("Owner")))
        .expect("enqueue");
    let progress = q.progress(run).expect("progress").expect("a queued run");
    assert_eq!(progress.keys, 250);
    assert!(progress.queued >= 3, "{progress:?}");
    let report = tokio
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), rt.work(&q, &options("lister"))).await
        })
        .expect("worker finished within 60 s")
        .expect("worker");
    assert_eq!(report.keys, 250);
    let hits = hits.lock().unwrap();
    assert!((1..=250).all(|id| hits.get(&format!("/owners/{id}")) == Some(&1)));
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {} AND status = 'completed' AND stored = 250",
            run.0
        )),
        1
    );
}

#[test]
fn a_source_that_stays_unreachable_gives_its_batch_up_with_reasons() {
    let Some(mut pg) = Pg::new() else { return };
    let tokio = tokio();
    let store = pg.store_url();
    // A port nobody listens on: every connection is refused.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let rt = runtime_with(
        &format!("http://{refused}"),
        &store,
        "unreachable_after = 5\nunreachable_pause = \"100ms\"",
    );
    let q = queue(&store);
    let run = tokio
        .block_on(q.enqueue(&rt, &FetchRequest::new("Owner.id in 1..=100")))
        .expect("enqueue");
    let report = tokio
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), rt.work(&q, &options("cut-off"))).await
        })
        .expect("worker finished within 60 s")
        .expect("worker");
    // Three claims put back, the fourth gives the batch up.
    assert_eq!((report.released, report.gave_up), (3, 1), "{report:?}");
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_queue_batches WHERE state = 'failed' \
             AND reason LIKE '{refused} could not be reached%'"
        )),
        1
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {} AND status = 'failed' \
             AND reason LIKE 'gave up after 3 claims%'",
            run.0
        )),
        100
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {} AND status = 'completed' AND failed = 100",
            run.0
        )),
        1
    );
}

#[test]
fn four_worker_processes_killed_at_random_with_faulty_source_store_every_key_once() {
    use kye_runtime::testing::Chaos;

    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    // 20% of requests fail (500, 503, a body cut short), at most twice per path: with three
    // attempts every key gets through.
    let chaos = Chaos::new(17, 0.2)
        .fault(Fault::Status(500), 1)
        .fault(Fault::Status(503), 1)
        .fault(Fault::CloseMidBody, 1)
        .max_faults_per_path(2);
    let server = TestServer::start_on_thread(routes(&hits, Duration::from_millis(60)).chaos(chaos))
        .expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    let run = {
        let tokio = tokio();
        let _guard = tokio.enter();
        let rt = runtime(&base, &store);
        tokio
            // Four kills may hit one batch's workers up to four times (the kill schedule can
            // pick the same slot again, and a replacement takes the batch its victim held):
            // claims enough that no batch gives up, so every key must end stored.
            .block_on(
                queue(&store)
                    .batch_attempts(10)
                    .enqueue(&rt, &FetchRequest::new("Owner.id in 1..=500").follow(1)),
            )
            .expect("enqueue")
    };
    let spawn = || {
        spawn_self(
            &test_name(module_path!(), "queue_child_worker"),
            &[
                ("KYE_QUEUE_STORE", store.clone()),
                ("KYE_QUEUE_BASE", base.clone()),
            ],
        )
    };
    let mut seed = u64::from(std::process::id()) | 1;
    eprintln!("kill schedule seed {seed}");
    let mut random = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut children: Vec<std::process::Child> = (0..4).map(|_| spawn()).collect();
    // Four kills, each of a random worker at a random moment, each replaced at once.
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while kills < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300 + random(500)));
        let i = random(children.len() as u64) as usize;
        let mut victim = std::mem::replace(&mut children[i], spawn());
        let _ = victim.kill();
        let _ = victim.wait();
        kills += 1;
    }
    assert_eq!(kills, 4);
    // The workers still alive finish the run (each exits when no run has work).
    let deadline = Instant::now() + Duration::from_secs(120);
    for mut child in children {
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a worker still ran after 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    check_run(&mut pg, run.0, 500);
    assert!(
        pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE attempts > 1") >= 1,
        "some batch was taken again after its worker was killed"
    );
}

#[test]
fn a_list_function_that_fails_leaves_its_keys_done_and_the_run_failed_with_its_error() {
    let Some(mut pg) = Pg::new() else { return };
    let tokio = tokio();
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let store = pg.store_url();
    let rt = runtime(server.base_url(), &store);
    let q = queue(&store);
    let err = tokio
        .block_on(q.enqueue(&rt, &FetchRequest::new("Cat")))
        .expect_err("the listing fails");
    assert!(err.to_string().contains("broke at page 2"), "{err}");
    let report = tokio
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), rt.work(&q, &options("after-list"))).await
        })
        .expect("worker finished within 60 s")
        .expect("worker");
    assert_eq!(report.keys, 150);
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM S._kye_runs WHERE status = 'failed' AND stored = 150 \
             AND error LIKE '%broke at page 2%' AND ended_at IS NOT NULL"
        ),
        1
    );
}

#[test]
fn a_worker_whose_database_connections_are_terminated_mid_batch_loses_no_key_and_doubles_none() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let server =
        TestServer::start_on_thread(routes(&hits, Duration::from_millis(30))).expect("server");
    let store = pg.store_url();
    let base = server.base_url().to_string();
    let run = {
        let tokio = tokio();
        let _guard = tokio.enter();
        let rt = runtime(&base, &store);
        tokio
            .block_on(queue(&store).enqueue(&rt, &FetchRequest::new("Owner.id in 1..=200")))
            .expect("enqueue")
    };
    let first = {
        let (base, store) = (base.clone(), store.clone());
        std::thread::spawn(move || {
            let tokio = tokio();
            let rt = runtime_with(&base, &store, "");
            let q = queue(&store);
            tokio.block_on(async {
                tokio::time::timeout(Duration::from_secs(120), rt.work(&q, &options("first"))).await
            })
        })
    };
    // Once it holds a batch, the server ends every connection kye has to this schema (its
    // store, queue and budget connections alike), as a restarted or failed-over server would.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state = 'claimed'") == 0 {
        assert!(Instant::now() < deadline, "no batch was claimed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let app = format!("kye {}", pg.schema);
    let ended = pg.count(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = '{app}') t"
    ));
    assert!(ended >= 1, "no connection of the worker was found");
    // The first worker reconnects and goes on, or stops with an error; a second one finishes
    // whatever is left. Every key ends stored exactly once.
    let first = first.join().expect("the first worker's thread");
    let second = worker_thread(base, store, "second")
        .join()
        .expect("second worker");
    assert_eq!(
        pg.count(r#"SELECT count(*) FROM S."Owner""#),
        200,
        "first: {first:?}, second: {second:?}"
    );
    assert_eq!(pg.count(r#"SELECT count(DISTINCT id) FROM S."Owner""#), 200);
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_keys WHERE run_id = {} AND status = 'stored'",
            run.0
        )),
        200
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_queue_batches WHERE state <> 'done'"),
        0
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {} AND status = 'completed' AND stored = 200",
            run.0
        )),
        1
    );
}

/// A process killed while it records a queued run's keys leaves the run `enqueuing`, its
/// enqueue lock gone with it. Readers and writers alike take such a run for alive only while
/// batches it recorded wait for a worker; with none left it is shown interrupted, and the next
/// writer (or idle worker) ends it `failed`, saying why, with the counts of its batches; one
/// with batches left is ended so by the worker that does them. Before, it stayed `running` for
/// ever: no worker ended it, `runs` showed it running, and a fetch of its request could not
/// resume it.
#[test]
fn a_queued_run_whose_recording_process_died_ends_once_its_batches_are_done() {
    let Some(mut pg) = Pg::new() else { return };
    let tokio = tokio();
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let store = pg.store_url();
    let rt = runtime(server.base_url(), &store);
    let q = queue(&store);
    let enqueue = |request: &str| {
        tokio
            .block_on(q.enqueue(&rt, &FetchRequest::new(request)))
            .expect("enqueue")
    };
    let waiting = enqueue("Owner.id in 1..=5");
    let drained = enqueue("Owner.id in 6..=8");
    // What a kill -9 in the middle of recording leaves: the run still `enqueuing`, its lock
    // released by the server; `drained`'s batch was done by a worker before the kill.
    let sql = format!(
        "UPDATE \"{s}\"._kye_queue_runs SET state = 'enqueuing' WHERE run_id IN ({w}, {d}); \
         UPDATE \"{s}\"._kye_queue_batches SET state = 'done', \
         stored = jsonb_array_length(keys), finished_at = now() WHERE run_id = {d}",
        s = pg.schema,
        w = waiting.0,
        d = drained.0
    );
    pg.c.batch_execute(&sql)
        .expect("state of a killed recorder");
    let spec: kye_runtime::store::StoreSpec = store.parse().expect("spec");
    let reader = kye_runtime::store::open_store_read_only(&spec).expect("reader");
    let status = |s: &dyn kye_runtime::store::StoreRead, run| s.run(run).unwrap().unwrap().status;
    for handle in [reader.as_ref(), &*rt.with_store(|s| s.reader().unwrap())] {
        assert_eq!(
            status(handle, waiting),
            RunStatus::Running,
            "its batch waits"
        );
        assert_eq!(
            status(handle, drained),
            RunStatus::Interrupted,
            "nothing waits"
        );
    }
    assert_eq!(
        rt.with_store(|s| s.run(drained).unwrap().unwrap().status),
        RunStatus::Interrupted,
        "the writer's own handle agrees"
    );
    // The next writer ends the run with nothing left; the other goes on.
    drop(runtime(server.base_url(), &store));
    let ended =
        "SELECT count(*) FROM S._kye_runs WHERE status = 'failed' AND ended_at IS NOT NULL \
                 AND error LIKE '%recording the run''s keys stopped%'";
    assert_eq!(
        pg.count(&format!("{ended} AND id = {} AND stored = 3", drained.0)),
        1
    );
    assert_eq!(status(reader.as_ref(), waiting), RunStatus::Running);
    // A worker does the batch left and ends that run too.
    let report = tokio
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), rt.work(&q, &options("after-kill"))).await
        })
        .expect("worker finished within 60 s")
        .expect("worker");
    assert_eq!(report.keys, 5);
    assert_eq!(
        pg.count(&format!("{ended} AND id = {} AND stored = 5", waiting.0)),
        1
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_queue_runs WHERE state <> 'done'"),
        0
    );
}

/// The gates of the gated list functions, one per test: each lists owners 1..=100, waits for
/// its gate to reach 1, lists 101..=200, waits for 2, lists 201..=300.
static GATES: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

fn gated<const G: usize>(_ctx: Context, keys: KeySender) -> ListFuture {
    Box::pin(async move {
        for step in 0..3u32 {
            while GATES[G].load(Ordering::SeqCst) < step {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for id in step * 100 + 1..=step * 100 + 100 {
                keys.send(Key::single(i64::from(id))).await?;
            }
        }
        Ok(())
    })
}

const fn gated_lister(call: fn(Context, KeySender) -> ListFuture) -> ListerRegistration {
    ListerRegistration {
        model: "Owner",
        identifier: &["id"],
        function: "gated_owners",
        module_path: "queue",
        file: "queue.rs",
        line: 1,
        doc: "",
        call,
    }
}

static GATED: [ListerRegistration; 3] = [
    gated_lister(gated::<0>),
    gated_lister(gated::<1>),
    gated_lister(gated::<2>),
];

/// A queued run of `Owner` (listed by gated lister `g`) recorded on a thread of its own
/// through the returned queue; returns once its first 100 keys are recorded and the server
/// has ended the recorder's connections (its enqueue lock released with them).
fn enqueue_then_lose_the_connection(
    pg: &mut Pg,
    base: &str,
    g: usize,
) -> (
    RunId,
    Arc<Queue>,
    std::thread::JoinHandle<Result<RunId, Error>>,
) {
    let (base, store) = (base.to_string(), pg.store_url());
    let q = Arc::new(queue(&store));
    let enqueuer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let tokio = tokio();
            let registry = Registry::from_parts(
                ["Cat", "Owner"]
                    .into_iter()
                    .map(|m| RegisteredModel::new(schema(), m).expect("model in schema")),
                [&CAT, &OWNER],
            )
            .expect("registry")
            .with_listers([&GATED[g]])
            .expect("listers");
            let rt = runtime_of(registry, &base, &store, "");
            tokio.block_on(q.enqueue(&rt, &FetchRequest::new("Owner")))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.count(RECORDED) < 100 {
        assert!(
            Instant::now() < deadline,
            "the first keys were not recorded"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let run = RunId(pg.count("SELECT run_id FROM S._kye_queue_runs"));
    let app = format!("kye {}", pg.schema);
    let pids = pg.lines(&format!(
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = '{app}'"
    ));
    assert!(!pids.is_empty(), "no connection of the recorder was found");
    pg.count(&format!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE pid IN ({pids})) t"
    ));
    let gone = format!(
        "SELECT (SELECT count(*) FROM pg_locks WHERE pid IN ({pids})) \
         + (SELECT count(*) FROM pg_stat_activity WHERE pid IN ({pids}))"
    );
    while pg.count(&gone) > 0 {
        assert!(
            Instant::now() < deadline,
            "the recorder's connections did not end"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (run, q, enqueuer)
}

/// Keys recorded in the queue so far.
const RECORDED: &str =
    "SELECT coalesce(sum(jsonb_array_length(keys)), 0)::bigint FROM S._kye_queue_batches";

/// Another call on the recorder's queue (`kye serve` and `fetch --queue` show its progress)
/// finds the connection lost, and the next reconnects: the recording goes on on the new one.
fn reconnect(q: &Queue, run: RunId) {
    let deadline = Instant::now() + Duration::from_secs(30);
    assert!(q.progress(run).is_err(), "the connection was not lost");
    while q.progress(run).is_err() {
        assert!(Instant::now() < deadline, "the queue did not reconnect");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The connection of a process recording a queued run's keys is lost and comes back: it takes
/// the run's enqueue lock again, so a writer opened meanwhile leaves the run alone, and every
/// key is recorded and done. Before, the lock stayed free after the reconnect and the writer
/// ended the run `failed` while its keys were still being recorded.
#[test]
fn a_recorder_whose_connection_comes_back_keeps_its_run() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let (base, store) = (server.base_url().to_string(), pg.store_url());
    drop(runtime(&base, &store));
    let (run, q, enqueuer) = enqueue_then_lose_the_connection(&mut pg, &base, 0);
    reconnect(&q, run);
    // A writer opened now sees the enqueue lock held and leaves the run recording.
    drop(runtime(&base, &store));
    let state = format!("SELECT state FROM S._kye_queue_runs WHERE run_id = {run}");
    assert_eq!(pg.lines(&state), "enqueuing");
    GATES[0].store(2, Ordering::SeqCst);
    let got = enqueuer
        .join()
        .expect("enqueuer's thread")
        .expect("enqueue");
    assert_eq!(got, run);
    assert_eq!(pg.count(RECORDED), 300);
    let report = worker_thread(base, store, "after-reconnect")
        .join()
        .expect("worker");
    assert_eq!(report.keys, 300);
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM S._kye_runs WHERE id = {run} AND status = 'completed' \
             AND stored = 300 AND error IS NULL"
        )),
        1
    );
}

/// A run whose recorder's connection was lost long enough for a worker to end it (its enqueue
/// lock free) stays ended: the recorder, back on a new connection, records no more keys into
/// it, does not reopen it, and fails saying why. Before, it added batches to the ended run and
/// set it `open` again.
#[test]
fn a_recorder_whose_run_was_ended_meanwhile_stops_and_leaves_it_ended() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let (base, store) = (server.base_url().to_string(), pg.store_url());
    drop(runtime(&base, &store));
    let (run, q, enqueuer) = enqueue_then_lose_the_connection(&mut pg, &base, 1);
    // A worker takes the recorder for dead, does the batch recorded and ends the run.
    let report = worker_thread(base, store, "meanwhile")
        .join()
        .expect("worker");
    assert_eq!(report.keys, 100);
    let ended = format!(
        "SELECT count(*) FROM S._kye_runs WHERE id = {run} AND status = 'failed' \
         AND stored = 100 AND error LIKE '%recording the run''s keys stopped%'"
    );
    assert_eq!(pg.count(&ended), 1);
    reconnect(&q, run);
    GATES[1].store(2, Ordering::SeqCst);
    let err = enqueuer
        .join()
        .expect("enqueuer's thread")
        .expect_err("the recorder stops");
    let text = err.to_string();
    assert!(
        text.contains(&format!("queued run {run}: another process ended the run")),
        "{text}"
    );
    assert_eq!(pg.count(RECORDED), 100);
    let state = format!("SELECT state FROM S._kye_queue_runs WHERE run_id = {run}");
    assert_eq!(pg.lines(&state), "done");
    assert_eq!(pg.count(&ended), 1);
}

/// The same, when the recorder's own next chunk is what finds the connection lost: recording
/// stops on that error, and the run another process ended stays ended, its state and error
/// untouched. Before, the recorder's last step set it `open` again over its `done` and
/// replaced its error with the recorder's.
#[test]
fn a_recorder_that_stops_on_the_lost_connection_leaves_an_ended_run_ended() {
    let Some(mut pg) = Pg::new() else { return };
    let hits = Hits::default();
    let server = TestServer::start_on_thread(routes(&hits, Duration::ZERO)).expect("server");
    let (base, store) = (server.base_url().to_string(), pg.store_url());
    drop(runtime(&base, &store));
    let (run, _q, enqueuer) = enqueue_then_lose_the_connection(&mut pg, &base, 2);
    let report = worker_thread(base, store, "meanwhile")
        .join()
        .expect("worker");
    assert_eq!(report.keys, 100);
    let ended = format!(
        "SELECT count(*) FROM S._kye_runs WHERE id = {run} AND status = 'failed' \
         AND stored = 100 AND error LIKE '%recording the run''s keys stopped%'"
    );
    assert_eq!(pg.count(&ended), 1);
    GATES[2].store(2, Ordering::SeqCst);
    enqueuer
        .join()
        .expect("enqueuer's thread")
        .expect_err("the recorder stops");
    assert_eq!(pg.count(RECORDED), 100);
    let state = format!("SELECT state FROM S._kye_queue_runs WHERE run_id = {run}");
    assert_eq!(pg.lines(&state), "done");
    assert_eq!(pg.count(&ended), 1);
}
