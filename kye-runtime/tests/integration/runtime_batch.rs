//! Batch fetchers end to end: keys grouped up to the batch size, one call per group against a
//! loopback batch endpoint (`/cats?ids=1,2,3`), the answer matched back to the keys, every key
//! settled as a single fetch would be (stored, rejected alone, missing, failed), retries and
//! rate limits per call, skip-fresh and `--follow` through groups.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kye_lang::Schema;
use kye_runtime::store::{IndexKey, KeyStatus, RecordQuery, RunStatus};
use kye_runtime::testing::{query_param, Fault, FetcherBuilder, Route, Routes, TestServer};
use kye_runtime::{BatchFuture, Config, Context, Error, FetchFuture, Key, KeyValue};
use kye_runtime::{FetchRequest, FetcherRegistration, RegisteredModel, Registry, Runtime};
use serde_json::{json, Value};

const SCHEMA: &str = r#"
Cat(id: Number) {
  name: String
  lives: Number
}
Owner(id: Number) {
  name: String
  cats: Cat*
}
"#;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("batch.kye", SCHEMA).expect("test schema compiles"))
}

fn setting(ctx: &Context, name: &str) -> Result<String, Error> {
    ctx.config_str(name)
        .ok_or_else(|| Error::permanent(format!("{name} is not configured")))
}

/// The batch fetcher: `GET {base}{endpoint}?ids=1,2,3`, an array of cats back.
fn cats(keys: &[Key], ctx: Context) -> BatchFuture {
    let ids: Vec<String> = keys
        .iter()
        .map(|k| match k.values().first() {
            Some(KeyValue::Int(i)) => i.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    Box::pin(async move {
        let url = format!(
            "{}{}?ids={}",
            setting(&ctx, "test.base_url")?,
            setting(&ctx, "test.endpoint")?,
            ids.join(",")
        );
        match ctx.get_json_value(&url).await? {
            Value::Array(records) => Ok(records),
            other => Err(Error::permanent(format!("not a list of cats: {other}"))),
        }
    })
}

/// `call` of the batch fetcher: a batch of one.
fn one_cat(key: &Key, ctx: Context) -> FetchFuture {
    kye_runtime::__private::batch_of_one("cats", cats(std::slice::from_ref(key), ctx))
}

fn owner(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let base = setting(&ctx, "test.base_url")?;
        Ok(Some(
            ctx.get_json_value(&format!("{base}/owners/{id}")).await?,
        ))
    })
}

static CATS: FetcherRegistration = FetcherBuilder::new("Cat", &["id"], "cats", one_cat)
    .batch(50, cats)
    .build();
static OWNER: FetcherRegistration = FetcherBuilder::new("Owner", &["id"], "owner", owner).build();

fn registry() -> Registry {
    Registry::from_parts(
        ["Cat", "Owner"]
            .into_iter()
            .map(|m| RegisteredModel::new(schema(), m).expect("model in schema")),
        [&CATS, &OWNER],
    )
    .expect("registry")
}

fn cat(id: u64) -> Value {
    json!({"id": id, "name": format!("cat-{id}"), "lives": 9})
}

/// The ids a batch request asks for.
fn ids(query: &str) -> Vec<u64> {
    query_param(query, "ids")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The most ids one request to `/cats` asked for.
static LARGEST: AtomicUsize = AtomicUsize::new(0);
/// Whether `/slow` stalls, and the smallest id its last request asked for.
static STALL: AtomicBool = AtomicBool::new(true);
static SMALLEST_SLOW: AtomicUsize = AtomicUsize::new(0);

fn routes() -> Routes {
    Routes::new()
        // Every cat exists.
        .generate_with_query("/cats", |_, query| {
            let ids = ids(query);
            LARGEST.fetch_max(ids.len(), Ordering::SeqCst);
            let body: Vec<Value> = ids.into_iter().map(cat).collect();
            Some(Route::json(Value::Array(body).to_string()))
        })
        // Multiples of 10 unknown, 5 invalid, and a cat 999 nobody asked for next to 3.
        .generate_with_query("/partial", |_, query| {
            let mut body = Vec::new();
            for id in ids(query) {
                match id {
                    _ if id % 10 == 0 => {}
                    5 => body.push(json!({"id": 5, "name": "five", "lives": "nine"})),
                    3 => {
                        body.push(cat(3));
                        body.push(cat(999));
                    }
                    // Sent as 4.0: the same key as 4.
                    4 => body.push(json!({"id": 4.0, "name": "four", "lives": 9})),
                    _ => body.push(cat(id)),
                }
            }
            Some(Route::json(Value::Array(body).to_string()))
        })
        // Busy once, then fine.
        .generate_with_query("/flaky", |_, query| {
            let body: Vec<Value> = ids(query).into_iter().map(cat).collect();
            Some(Route::json(Value::Array(body).to_string()).fail_first(1, Fault::Status(503)))
        })
        // Always busy.
        .generate_with_query("/down", |_, _| {
            Some(Route::json("[]").always(Fault::Status(503)))
        })
        // Refuses any batch with cat 7 in it.
        .generate_with_query("/picky", |_, query| {
            let ids = ids(query);
            if ids.contains(&7) {
                return Some(Route::text(400, "cat 7 is classified"));
            }
            let body: Vec<Value> = ids.into_iter().map(cat).collect();
            Some(Route::json(Value::Array(body).to_string()))
        })
        // Stalls a batch asking for a cat above 100 while `STALL` is set.
        .generate_with_query("/slow", |_, query| {
            let ids = ids(query);
            SMALLEST_SLOW.store(
                ids.iter().copied().min().unwrap_or(0) as usize,
                Ordering::SeqCst,
            );
            let stall = STALL.load(Ordering::SeqCst) && ids.iter().any(|&i| i > 100);
            let body: Vec<Value> = ids.into_iter().map(cat).collect();
            let route = Route::json(Value::Array(body).to_string());
            Some(if stall {
                route.always(Fault::Stall(Duration::from_secs(10)))
            } else {
                route
            })
        })
        .generate("/owners/", |rest| {
            let id: u64 = rest.parse().ok()?;
            // Owner n has cats 10n+1 ..= 10n+10.
            let cats: Vec<Value> = (1..=10).map(|c| json!({"id": 10 * id + c})).collect();
            Some(Route::json(
                json!({"id": id, "name": format!("owner-{id}"), "cats": cats}).to_string(),
            ))
        })
}

fn runtime(base: &str, endpoint: &str, extra: &str, db: &std::path::Path) -> Runtime {
    let config = Config::from_toml_str(
        &format!(
            r#"
            [test]
            base_url = "{base}"
            endpoint = "{endpoint}"
            [run]
            concurrency = 8
            timeout = "2s"
            max_attempts = 3
            backoff_base = "10ms"
            backoff_max = "50ms"
            {extra}
            "#
        ),
        None,
    )
    .expect("config");
    Runtime::builder()
        .registry(registry())
        .config(config)
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()
        .expect("runtime")
}

fn status(rt: &Runtime, id: u64) -> Option<KeyStatus> {
    rt.with_store(|s| {
        s.latest_outcome("Cat", &IndexKey::single("id", json!(id)))
            .expect("outcome read")
            .map(|o| o.status)
    })
}

#[tokio::test]
async fn keys_are_grouped_up_to_the_batch_size_one_request_a_group() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(server.base_url(), "/cats", "", &dir.path().join("kye.db"));

    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=120"))
        .await
        .expect("run");
    assert_eq!(summary.status, RunStatus::Completed, "{summary}");
    assert_eq!(summary.requested, 120);
    assert_eq!(summary.counts.stored, 120, "{summary:?}");
    // ceil(120 / 50) requests, none above 50 keys.
    assert_eq!(server.requests("/cats"), 3);
    assert!(LARGEST.load(Ordering::SeqCst) <= 50);
    let stored = rt.with_store(|s| s.records(&RecordQuery::new("Cat")).expect("records"));
    let ids: HashSet<i64> = stored.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, (1..=120).collect());

    // Fresh keys are skipped without a call; the stale are fetched again, grouped.
    let again = rt
        .fetch(FetchRequest::new("Cat.id in 1..=130").max_age(Duration::from_secs(3600)))
        .await
        .expect("second run");
    assert_eq!(
        (again.counts.skipped, again.counts.stored),
        (120, 10),
        "{again:?}"
    );
    assert_eq!(server.requests("/cats"), 4);
}

#[tokio::test]
async fn the_answer_is_matched_back_key_by_key() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(
        server.base_url(),
        "/partial",
        "",
        &dir.path().join("kye.db"),
    );

    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=20"))
        .await
        .expect("run");
    assert_eq!(server.requests("/partial"), 1);
    let c = summary.counts;
    // 10 and 20 missing; 5 rejected alone; the 17 others stored (4 sent as 4.0).
    assert_eq!(
        (c.stored, c.rejected, c.missing, c.failed),
        (17, 1, 2, 0),
        "{summary:?}"
    );
    assert_eq!(status(&rt, 4), Some(KeyStatus::Stored));
    assert_eq!(status(&rt, 5), Some(KeyStatus::Rejected));
    assert_eq!(status(&rt, 10), Some(KeyStatus::Missing));
    // The record nobody asked for is not stored, and no key outcome is made up for it.
    assert_eq!(status(&rt, 999), None);
    let stored = rt.with_store(|s| s.records(&RecordQuery::new("Cat")).expect("records"));
    assert!(stored.iter().all(|r| r["id"] != 999), "{stored:?}");

    let rejects = rt.with_store(|s| s.rejects(Some(summary.run), None).expect("rejects"));
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    let five = rejects
        .iter()
        .find(|r| r.payload["id"] == 5)
        .expect("5 rejected");
    assert!(five.reason.contains("lives"), "{}", five.reason);
    let stray = rejects
        .iter()
        .find(|r| r.payload["id"] == 999)
        .expect("999 rejected");
    let asked: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    assert_eq!(
        stray.reason,
        format!(
            "Cat returned id 999 that the batch [{}] did not ask for (fetcher `cats`)",
            asked.join(", ")
        )
    );
    assert_eq!(stray.key, Some(json!({"id": 999})));
    // The summary shows it among the rejects.
    assert!(
        summary.rejects.iter().any(|r| r.key == "999"),
        "{:?}",
        summary.rejects
    );
    let missing = rt.with_store(|s| {
        s.latest_outcome("Cat", &IndexKey::single("id", json!(10)))
            .expect("outcome")
            .expect("10 has an outcome")
    });
    assert!(
        missing
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("cats returned no record for Cat.id = 10")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_busy_batch_is_retried_as_one_call() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(server.base_url(), "/flaky", "", &dir.path().join("kye.db"));

    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=30"))
        .await
        .expect("run");
    assert_eq!(summary.counts.stored, 30, "{summary:?}");
    // One 503, one retry of the whole group.
    assert_eq!(server.requests("/flaky"), 2);
    assert_eq!(summary.retries, 1, "{summary:?}");
}

#[tokio::test]
async fn a_refused_batch_fails_each_of_its_keys_with_the_reason() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(server.base_url(), "/picky", "", &dir.path().join("kye.db"));

    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=60"))
        .await
        .expect("run");
    let c = summary.counts;
    // [1..=50] holds 7: refused (400, not retried); [51..=60] stored.
    assert_eq!((c.failed, c.stored), (50, 10), "{summary:?}");
    assert_eq!(server.requests("/picky"), 2);
    assert_eq!(summary.retries, 0);
    for id in [1, 7, 50] {
        assert_eq!(status(&rt, id), Some(KeyStatus::Failed), "id {id}");
    }
    let reason = rt.with_store(|s| {
        s.latest_outcome("Cat", &IndexKey::single("id", json!(33)))
            .expect("outcome")
            .and_then(|o| o.reason)
    });
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("400")),
        "{reason:?}"
    );
}

#[tokio::test]
async fn the_rate_limit_spaces_the_batch_calls() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(
        server.base_url(),
        "/cats",
        "rate_limit = 5\nburst = 1",
        &dir.path().join("kye.db"),
    );
    let began = Instant::now();
    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=200"))
        .await
        .expect("run");
    assert_eq!(summary.counts.stored, 200, "{summary:?}");
    assert_eq!(server.requests("/cats"), 4);
    // 4 calls at 5 per second, one at a time: at least 3 gaps of 200 ms.
    assert!(
        began.elapsed() >= Duration::from_millis(550),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn followed_references_of_a_batch_model_are_batched_too() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(server.base_url(), "/cats", "", &dir.path().join("kye.db"));

    let summary = rt
        .fetch(FetchRequest::new("Owner.id in 1..=4").follow(1))
        .await
        .expect("run");
    assert_eq!(summary.status, RunStatus::Completed, "{summary}");
    // 4 owners, 40 cats referenced.
    assert_eq!(summary.followed, 40, "{summary:?}");
    assert_eq!(summary.counts.stored, 44, "{summary:?}");
    // Grouped while they came (a group waits 20 ms for company): far fewer calls than cats.
    let calls = server.requests("/cats");
    assert!((1..=4).contains(&calls), "{calls} calls for 40 cats");
    assert_eq!(status(&rt, 41), Some(KeyStatus::Stored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_batch_run_resumes_with_the_keys_left() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kye.db");
    let rt = runtime(server.base_url(), "/slow", "grace_period = \"100ms\"", &db);
    let stop = rt.shutdown().clone();
    let probe = std::sync::Arc::new(server);
    let watched = probe.clone();
    tokio::spawn(async move {
        // Two groups answered, the third stalled: stop.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && watched.requests("/slow") < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.trigger();
    });
    let request = FetchRequest::new("Cat.id in 1..=150");
    let first = tokio::time::timeout(Duration::from_secs(30), rt.fetch(request.clone()))
        .await
        .expect("the first run ends")
        .expect("run");
    assert_eq!(first.status, RunStatus::Interrupted, "{first}");
    assert_eq!(first.counts.stored, 100, "{first}");
    assert_eq!(first.interrupted, 50, "the stalled group's keys: {first}");
    drop(rt);

    STALL.store(false, Ordering::SeqCst);
    let rt = runtime(probe.base_url(), "/slow", "", &db);
    let second = tokio::time::timeout(Duration::from_secs(30), rt.fetch(request))
        .await
        .expect("the resumed run ends")
        .expect("run");
    assert_eq!(second.status, RunStatus::Completed, "{second}");
    assert_eq!(second.resumed_from, Some(first.run), "{second}");
    assert_eq!(
        (second.counts.skipped, second.counts.stored),
        (100, 50),
        "{second}"
    );
    // One more call, for the 50 keys left only.
    assert_eq!(probe.requests("/slow"), 4);
    assert_eq!(SMALLEST_SLOW.load(Ordering::SeqCst), 101);
}

#[tokio::test]
async fn a_batch_still_busy_after_its_attempts_fails_each_key() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(server.base_url(), "/down", "", &dir.path().join("kye.db"));

    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=10"))
        .await
        .expect("run");
    assert_eq!(summary.counts.failed, 10, "{summary:?}");
    // max_attempts = 3, for the group as a whole.
    assert_eq!(server.requests("/down"), 3);
    assert_eq!(summary.retries, 2, "{summary:?}");
    for failure in &summary.failures {
        assert!(
            failure.reason.contains("gave up after 3 attempts") && failure.reason.contains("503"),
            "{failure:?}"
        );
    }
    assert!(!summary.failures.is_empty());
    for id in 1..=10 {
        assert_eq!(status(&rt, id), Some(KeyStatus::Failed), "id {id}");
    }
}

/// A group whose call fails for good settles only the keys it was for with the error: keys of
/// the group skipped before the call (fresh here, `--max-age`) stay skipped. Before, every key
/// of the group took the error, and a fresh stored key was recorded failed.
#[tokio::test]
async fn a_failed_group_fails_only_the_keys_it_asked_for() {
    let server = TestServer::start(routes()).await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kye.db");
    let rt = runtime(server.base_url(), "/cats", "", &db);
    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=5"))
        .await
        .expect("run");
    assert_eq!(summary.counts.stored, 5, "{summary}");
    drop(rt);

    let rt = runtime(server.base_url(), "/down", "", &db);
    let summary = rt
        .fetch(FetchRequest::new("Cat.id in 1..=10").max_age(Duration::from_secs(3600)))
        .await
        .expect("run");
    assert_eq!(
        (summary.counts.skipped, summary.counts.failed),
        (5, 5),
        "{summary}"
    );
    assert_eq!(status(&rt, 3), Some(KeyStatus::Skipped));
    assert_eq!(status(&rt, 8), Some(KeyStatus::Failed));
    // The group asked only for the five stale keys, three times.
    assert_eq!(server.requests("/down"), 3);
}
