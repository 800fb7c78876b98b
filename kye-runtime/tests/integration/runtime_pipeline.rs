//! The Runtime end to end: request → registry → fetch (real loopback HTTP) → validate → SQLite
//! store → summary, including follow, freshness, interrupts and resume after SIGKILL.

use crate::common;

use std::sync::OnceLock;
use std::time::Duration;

use kye_lang::Schema;
use kye_runtime::store::{
    open_store_read_only, IndexKey, KeyStatus, RecordQuery, RunStatus, StoreSpec,
};
use kye_runtime::testing::{Fault, FetcherBuilder, Route, Routes, TestServer};
use kye_runtime::Config;
use kye_runtime::{Context, Error};
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetchRequest, GetResult, Runtime};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
use serde_json::{json, Value};

const SCHEMA: &str = r#"
Pokemon(id: Number)(name) {
  name: String
  weight: Number
  types: PokemonType+
}
PokemonType(name) { name: String  generation?: String }
"#;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("test.kye", SCHEMA).expect("test schema compiles"))
}

fn base(ctx: &Context) -> Result<String, Error> {
    ctx.config_str("test.base_url")
        .ok_or_else(|| Error::permanent("test.base_url is not configured"))
}

/// Maps the PokeAPI-like document onto the model (as a real fetcher would).
fn pokemon_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let doc = ctx
            .get_json_value(&format!("{}/pokemon/{id}/", base(&ctx)?))
            .await?;
        let mut out = json!({
            "id": doc["id"],
            "name": doc["name"],
            "weight": doc["weight"],
            "types": doc["types"].as_array().map(|ts| ts.iter().map(|t| json!({"name": t["type"]["name"]})).collect::<Vec<_>>()),
        });
        // Fields the API added that the mapping passes through (drift).
        if let Some(extra) = doc.get("shiny") {
            out["shiny"] = extra.clone();
        }
        Ok(Some(out))
    })
}

fn type_by_name(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::String(name)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let doc = ctx
            .get_json_value(&format!("{}/type/{name}/", base(&ctx)?))
            .await?;
        Ok(Some(
            json!({"name": doc["name"], "generation": doc["generation"]["name"]}),
        ))
    })
}

static POKEMON_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Pokemon", &["id"], "pokemon_by_id", pokemon_by_id)
        .doc("Pokémon by id.")
        .build();

static TYPE_BY_NAME: FetcherRegistration =
    FetcherBuilder::new("PokemonType", &["name"], "type_by_name", type_by_name)
        .doc("Type by name.")
        .build();

fn registry() -> Registry {
    Registry::from_parts(
        ["Pokemon", "PokemonType"]
            .into_iter()
            .map(|m| RegisteredModel::new(schema(), m).unwrap()),
        [&POKEMON_BY_ID, &TYPE_BY_NAME],
    )
    .unwrap()
}

fn pokemon(id: i64, name: &str, types: &[&str]) -> String {
    let types: Vec<Value> = types
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"slot": i + 1, "type": {"name": t, "url": format!("{{base}}/type/{t}/")}}))
        .collect();
    json!({"id": id, "name": name, "weight": 10 * id, "height": 7, "types": types, "order": id})
        .to_string()
}

fn ptype(name: &str) -> Route {
    Route::json(json!({"id": 1, "name": name, "generation": {"name": "generation-i", "url": "{base}/generation/1/"}}).to_string())
}

fn routes() -> Routes {
    let mut invalid: Value = serde_json::from_str(&pokemon(9, "heavy", &["rock"])).unwrap();
    invalid["weight"] = json!("very heavy");
    let mut drift: Value = serde_json::from_str(&pokemon(10, "caterpie", &["bug"])).unwrap();
    drift["shiny"] = json!(true);
    Routes::new()
        .route(
            "/pokemon/1/",
            Route::json(pokemon(1, "bulbasaur", &["grass", "poison"])),
        )
        .route(
            "/pokemon/2/",
            Route::json(pokemon(2, "ivysaur", &["grass", "poison"])),
        )
        .route(
            "/pokemon/3/",
            Route::json(pokemon(3, "venusaur", &["grass", "poison"])),
        )
        .route(
            "/pokemon/4/",
            Route::json(pokemon(4, "charmander", &["fire"])).fail_first(2, Fault::Status(500)),
        )
        .route(
            "/pokemon/5/",
            Route::json(pokemon(5, "charmeleon", &["fire"])).fail_first(
                1,
                Fault::RateLimited {
                    retry_after_secs: 1,
                },
            ),
        )
        .route(
            "/pokemon/6/",
            Route::json(pokemon(6, "charizard", &["fire", "flying"]))
                .always(Fault::Stall(Duration::from_secs(3))),
        )
        .route(
            "/pokemon/7/",
            Route::json(pokemon(7, "squirtle", &["water"])).always(Fault::TruncatedJson),
        )
        .route(
            "/pokemon/8/",
            Route::json(pokemon(8, "wartortle", &["water"]))
                .always(Fault::HugeBody { bytes: 300_000 }),
        )
        .route("/pokemon/9/", Route::json(invalid.to_string()))
        .route("/pokemon/10/", Route::json(drift.to_string()))
        // 11: no route → 404
        .route(
            "/pokemon/12/",
            Route::json(pokemon(13, "liar", &["normal"])),
        )
        .route(
            "/pokemon/25/",
            Route::json(pokemon(25, "pikachu", &["electric"])),
        )
        .route("/pokemon/403/", Route::text(403, "forbidden: key revoked"))
        .route("/type/grass/", ptype("grass"))
        .route("/type/poison/", ptype("poison"))
        .route("/type/fire/", ptype("fire"))
        .route("/type/bug/", ptype("bug"))
        .route("/type/electric/", ptype("electric"))
        .route("/type/rock/", ptype("rock"))
}

fn config(base: &str) -> Config {
    Config::from_toml_str(
        &format!(
            r#"
            [test]
            base_url = "{base}"
            [run]
            concurrency = 8
            timeout = "300ms"
            max_attempts = 3
            backoff_base = "10ms"
            backoff_max = "50ms"
            max_body_size = "64KiB"
            grace_period = "2s"
            "#
        ),
        None,
    )
    .unwrap()
}

fn runtime(base: &str, db: &std::path::Path) -> Runtime {
    Runtime::builder()
        .registry(registry())
        .config(config(base))
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap()
}

fn outcome(rt: &Runtime, model: &str, edge: &str, value: Value) -> Option<KeyStatus> {
    rt.with_store(|s| {
        s.latest_outcome(model, &IndexKey::single(edge, value))
            .unwrap()
            .map(|o| o.status)
    })
}

#[tokio::test]
async fn backfill_with_faults_ends_every_key_in_a_final_state() {
    let server = TestServer::start(routes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let rt = runtime(server.base_url(), &db);

    let summary = rt
        .fetch(FetchRequest::new("Pokemon.id in 1..=12").follow(1))
        .await
        .unwrap();
    let c = summary.counts;
    assert_eq!(summary.status, RunStatus::Completed, "{summary}");
    assert_eq!(summary.requested, 12);
    // Followed: grass, poison, fire, bug (stored records only; rock belongs to the rejected 9).
    assert_eq!(summary.followed, 4, "{summary:?}");
    // 1,2,3,4,5,10 + 4 types stored; 9, 12 rejected; 11 missing; 6, 7, 8 failed.
    assert_eq!(
        (c.stored, c.rejected, c.missing, c.failed, c.skipped),
        (10, 2, 1, 3, 0),
        "{summary:?}"
    );
    assert_eq!(c.total(), 12 + 4);
    assert!(!summary.is_clean());
    assert!(summary.retries >= 3, "{summary:?}");

    // Final states in the store.
    for (id, status) in [
        (1, KeyStatus::Stored),
        (4, KeyStatus::Stored),
        (5, KeyStatus::Stored),
        (6, KeyStatus::Failed),
        (7, KeyStatus::Failed),
        (8, KeyStatus::Failed),
        (9, KeyStatus::Rejected),
        (10, KeyStatus::Stored),
        (11, KeyStatus::Missing),
        (12, KeyStatus::Rejected),
    ] {
        assert_eq!(
            outcome(&rt, "Pokemon", "id", json!(id)),
            Some(status),
            "id {id}"
        );
    }
    assert_eq!(
        outcome(&rt, "PokemonType", "name", json!("poison")),
        Some(KeyStatus::Stored)
    );
    let reasons: Vec<(String, String)> = summary
        .failures
        .iter()
        .map(|f| (f.key.clone(), f.reason.clone()))
        .collect();
    let reason = |k: &str| {
        reasons
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    assert!(reason("6").contains("timed out"), "{reasons:?}");
    assert!(
        reason("6").contains("gave up after 3 attempts"),
        "{reasons:?}"
    );
    assert!(reason("7").contains("truncated JSON"), "{reasons:?}");
    assert!(
        reason("8").contains("exceeds the limit of 65536 bytes"),
        "{reasons:?}"
    );
    assert!(reason("8").contains("/pokemon/8/"), "{reasons:?}");

    let records = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon")).unwrap());
    let mut ids: Vec<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 10]);
    let bulbasaur = records.iter().find(|r| r["id"] == 1).unwrap();
    assert_eq!(bulbasaur["name"], "bulbasaur");
    let types = rt.with_store(|s| s.records(&RecordQuery::new("PokemonType")).unwrap());
    let grass = types.iter().find(|t| t["name"] == "grass").unwrap();
    assert_eq!(grass["generation"], "generation-i");

    let rejects = rt.with_store(|s| s.rejects(Some(summary.run), None).unwrap());
    assert_eq!(rejects.len(), 2);
    let heavy = rejects.iter().find(|r| r.payload["id"] == 9).unwrap();
    assert_eq!(heavy.payload["weight"], "very heavy", "raw payload kept");
    assert!(heavy.reason.contains("weight"), "{}", heavy.reason);
    let liar = rejects.iter().find(|r| r.payload["id"] == 13).unwrap();
    assert!(
        liar.reason.contains("requested Pokemon.id = 12"),
        "{}",
        liar.reason
    );

    let drift = rt.with_store(|s| s.drift().unwrap());
    assert!(
        drift
            .iter()
            .any(|d| d.model == "Pokemon" && d.path == "shiny"),
        "{drift:?}"
    );
    let run = rt.with_store(|s| s.run(summary.run).unwrap().unwrap());
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.counts, summary.counts);
    // Each referenced type fetched once, though several Pokémon share it.
    assert_eq!(server.requests("/type/grass/"), 1);
    assert_eq!(server.requests("/type/poison/"), 1);
}

#[tokio::test]
async fn fresh_keys_are_skipped_unless_refresh() {
    let server = TestServer::start(routes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
    let first = rt.fetch("Pokemon.id in 1..=3").await.unwrap();
    assert_eq!(first.counts.stored, 3);
    let second = rt
        .fetch(
            FetchRequest::new("Pokemon.id in 1..=3")
                .max_age_str("1h")
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        (second.counts.skipped, second.counts.stored),
        (3, 0),
        "{second}"
    );
    assert_eq!(server.requests("/pokemon/1/"), 1);
    let third = rt
        .fetch(
            FetchRequest::new("Pokemon.id in 1..=3")
                .max_age_str("1h")
                .unwrap()
                .refresh(true),
        )
        .await
        .unwrap();
    assert_eq!((third.counts.skipped, third.counts.stored), (0, 3));
    assert_eq!(server.requests("/pokemon/1/"), 2);
    let records = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon")).unwrap());
    assert_eq!(records.len(), 3, "no duplicate rows");
}

#[tokio::test]
async fn get_returns_the_record_the_errors_or_missing() {
    let server = TestServer::start(routes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(server.base_url(), &dir.path().join("kye.db"));

    let r = rt.get("Pokemon.id = 25").await.unwrap();
    let GetResult::Stored { record, .. } = &r else {
        panic!("{r:?}")
    };
    assert_eq!(record["name"], "pikachu");
    assert_eq!(record["types"][0]["name"], "electric");

    let r = rt.get("Pokemon.id = 9").await.unwrap();
    let GetResult::Rejected {
        payload, errors, ..
    } = &r
    else {
        panic!("{r:?}")
    };
    assert_eq!(payload["weight"], "very heavy");
    assert!(
        errors
            .iter()
            .any(|e| e.edges.contains(&"weight".to_string())),
        "{errors:?}"
    );

    let r = rt.get("Pokemon.id = 11").await.unwrap();
    let GetResult::Missing { reason, .. } = &r else {
        panic!("{r:?}")
    };
    assert!(reason.contains("404"), "{reason}");

    let e = rt.get("Pokemon.id = 403").await.unwrap_err().to_string();
    assert!(e.contains("HTTP 403") && e.contains("key revoked"), "{e}");
    let e = rt.get("Pokemon.id = 7").await.unwrap_err().to_string();
    assert!(
        e.contains("truncated JSON") && e.contains("Pokemon.id = 7"),
        "{e}"
    );

    let e = rt.get("Pokemon.id in 1..=2").await.unwrap_err().to_string();
    assert!(e.contains("exactly one key"), "{e}");
    let e = rt.get("Pokemn.id = 1").await.unwrap_err().to_string();
    assert!(e.contains("Pokemon"), "suggestion expected: {e}");
}

fn slow_routes(n: i64, stall: Duration) -> Routes {
    (1..=n)
        .map(|i| {
            (
                format!("/pokemon/{i}/"),
                Route::json(pokemon(i, &format!("p{i}"), &["normal"])).always(Fault::Stall(stall)),
            )
        })
        .collect()
}

#[tokio::test]
async fn interrupt_then_resume_fetches_only_the_rest() {
    let server = TestServer::start(slow_routes(40, Duration::from_millis(100)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let mut cfg = config(server.base_url());
    cfg.set("run.concurrency", 4);
    cfg.set("run.timeout", "5s");
    let build = || {
        Runtime::builder()
            .registry(registry())
            .config(cfg.clone())
            .env(Vec::new())
            .store(format!("sqlite:{}", db.display()))
            .handle_ctrl_c(false)
            .build()
            .unwrap()
    };
    let rt = build();
    let stop = rt.shutdown().clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        stop.trigger();
    });
    let first = rt.fetch("Pokemon.id in 1..=40").await.unwrap();
    assert_eq!(first.status, RunStatus::Interrupted, "{first}");
    assert_eq!(
        first.interrupted, 0,
        "in-flight keys finished within the grace period"
    );
    let done_first = first.counts.stored;
    assert!((8..40).contains(&done_first), "{first}");
    drop(rt);

    let rt = build();
    let second = rt.fetch("Pokemon.id in 1..=40").await.unwrap();
    assert_eq!(second.status, RunStatus::Completed, "{second}");
    assert_eq!(second.resumed_from, Some(first.run));
    assert_eq!(second.counts.skipped, done_first);
    assert_eq!(second.counts.stored, 40 - done_first);
    let records = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon")).unwrap());
    assert_eq!(records.len(), 40);
    let total_requests: u64 = (1..=40)
        .map(|i| server.requests(&format!("/pokemon/{i}/")))
        .sum();
    assert_eq!(total_requests, 40, "no key fetched twice");
}

/// Runs in a child process (see `sigkill_mid_run_then_resume`); does nothing otherwise.
#[test]
#[ignore = "child process helper"]
fn child_fetch_for_kill_test() {
    let (Ok(base), Ok(db)) = (
        std::env::var("KYE_TEST_CHILD_BASE"),
        std::env::var("KYE_TEST_CHILD_DB"),
    ) else {
        return;
    };
    let rt = common::child_tokio();
    rt.block_on(async {
        let mut cfg = config(&base);
        cfg.set("run.concurrency", 4);
        cfg.set("run.timeout", "5s");
        let kye = Runtime::builder()
            .registry(registry())
            .config(cfg)
            .env(Vec::new())
            .store(format!("sqlite:{db}"))
            .handle_ctrl_c(false)
            .build()
            .unwrap();
        kye.fetch("Pokemon.id in 1..=200").await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_resume() {
    let server = TestServer::start(slow_routes(200, Duration::from_millis(20)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            common::test_name(module_path!(), "child_fetch_for_kill_test").as_str(),
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KYE_TEST_CHILD_BASE", server.base_url())
        .env("KYE_TEST_CHILD_DB", &db)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some keys are stored, then kill -9.
    let spec: StoreSpec = format!("sqlite:{}", db.display()).parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stored_before = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "child made no progress"
        );
        if let Ok(store) = open_store_read_only(&spec) {
            if let Ok(r) = store.records(&RecordQuery::new("Pokemon")) {
                if r.len() >= 30 {
                    break r.len();
                }
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child ended before it was killed: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(stored_before < 200);

    let rt = runtime(server.base_url(), &db);
    let summary = rt.fetch("Pokemon.id in 1..=200").await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary}");
    let killed = summary.resumed_from.expect("resumes the killed run");
    assert!(summary.counts.skipped >= stored_before as u64, "{summary}");
    assert_eq!(
        summary.counts.skipped + summary.counts.stored,
        200,
        "{summary}"
    );
    let records = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon").limit(1000)).unwrap());
    assert_eq!(records.len(), 200, "every key exactly once");
    let run = rt.with_store(|s| s.run(killed).unwrap().unwrap());
    assert_eq!(run.status, RunStatus::Interrupted);
    // A key may be fetched twice only if it was in flight (not yet written) at the kill.
    let refetched: u64 = (1..=200)
        .map(|i| server.requests(&format!("/pokemon/{i}/")).saturating_sub(1))
        .sum();
    assert!(refetched <= 4 + 256, "refetched {refetched}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_faults_every_key_accounted_for_and_nothing_lost() {
    use kye_runtime::testing::Chaos;
    let n = 300i64;
    let routes: Routes = (1..=n)
        .map(|i| {
            (
                format!("/pokemon/{i}/"),
                Route::json(pokemon(i, &format!("p{i}"), &["normal"])),
            )
        })
        .collect();
    let chaos = Chaos::new(20, 0.2)
        .fault(Fault::Status(500), 2)
        .fault(Fault::Status(503), 2)
        .fault(
            Fault::RateLimited {
                retry_after_secs: 0,
            },
            2,
        )
        .fault(Fault::Stall(Duration::from_secs(2)), 1)
        .fault(Fault::CloseMidBody, 2)
        .fault(Fault::TruncatedJson, 2)
        .fault(Fault::NotJson, 2)
        .fault(Fault::HugeBody { bytes: 200_000 }, 1)
        .max_faults_per_path(2);
    let server = TestServer::start(routes.chaos(chaos)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(server.base_url());
    cfg.set("run.concurrency", 16);
    cfg.set("run.max_attempts", 4);
    let rt = Runtime::builder()
        .registry(registry())
        .config(cfg)
        .env(Vec::new())
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let summary = rt.fetch(format!("Pokemon.id in 1..={n}")).await.unwrap();
    let c = summary.counts;
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(c.total(), n as u64, "{summary}");
    assert_eq!((c.missing, c.rejected, c.skipped), (0, 0, 0), "{summary}");
    assert!(server.stats().faulted() > 0);

    let huge = Fault::HugeBody { bytes: 200_000 };
    let mut failed = 0;
    for i in 1..=n {
        let path = format!("/pokemon/{i}/");
        let got_huge = server.faults(&path).contains_key(&huge);
        let status = outcome(&rt, "Pokemon", "id", json!(i)).expect("every key has an outcome");
        // Only an oversized body is permanent; every other fault is retried through
        // (at most 2 faults per path, 4 attempts).
        let expected = if got_huge {
            KeyStatus::Failed
        } else {
            KeyStatus::Stored
        };
        assert_eq!(
            status,
            expected,
            "key {i}: faults {:?}",
            server.faults(&path)
        );
        if got_huge {
            failed += 1;
        }
    }
    assert_eq!(c.failed, failed);
    assert_eq!(c.stored, n as u64 - failed);
    let records = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon").limit(1000)).unwrap());
    assert_eq!(records.len() as u64, c.stored, "no valid record lost");
}

mod failing_store {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use kye_lang::Schema;
    use kye_runtime::store::*;
    use serde_json::Value;

    /// A real SQLite store whose `write_batch` fails (as on a full disk) after `ok_batches`.
    pub struct FailingStore {
        pub inner: Box<dyn StoreWrite>,
        pub ok_batches: usize,
        pub batches: Arc<AtomicUsize>,
    }

    impl StoreRead for FailingStore {
        fn kind(&self) -> &'static str {
            self.inner.kind()
        }

        fn location(&self) -> &Path {
            self.inner.location()
        }

        fn last_stored(&self, m: &str, k: &IndexKey) -> Result<Option<Timestamp>, StoreError> {
            self.inner.last_stored(m, k)
        }

        fn latest_outcome(
            &self,
            m: &str,
            k: &IndexKey,
        ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
            self.inner.latest_outcome(m, k)
        }

        fn latest_done(&self, m: &str, k: &IndexKey) -> Result<Option<KeyOutcomeInfo>, StoreError> {
            self.inner.latest_done(m, k)
        }

        fn record(&self, m: &str, k: &IndexKey) -> Result<Option<Value>, StoreError> {
            self.inner.record(m, k)
        }

        fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError> {
            self.inner.outcome_counts(run)
        }

        fn for_each_record(
            &self,
            q: &RecordQuery,
            each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.for_each_record(q, each)
        }

        fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError> {
            self.inner.runs(limit)
        }

        fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError> {
            self.inner.run(id)
        }

        fn rejects(
            &self,
            run: Option<RunId>,
            limit: Option<usize>,
        ) -> Result<Vec<RejectInfo>, StoreError> {
            self.inner.rejects(run, limit)
        }

        fn drift(&self) -> Result<Vec<DriftInfo>, StoreError> {
            self.inner.drift()
        }
        fn list_cursor(
            &self,
            model: &str,
            lister: &str,
        ) -> Result<Option<kye_runtime::store::ListCursorInfo>, StoreError> {
            self.inner.list_cursor(model, lister)
        }
    }

    impl StoreWrite for FailingStore {
        fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
            self.inner.reader()
        }

        fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
            self.inner.prepare(schema)
        }

        fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
            self.inner.begin_run(run)
        }

        fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
            self.inner.finish_run(run, end)
        }

        fn write_batch(
            &mut self,
            items: &[WriteItem],
        ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
            if self.batches.fetch_add(1, Ordering::SeqCst) >= self.ok_batches {
                return Err(StoreError::Io {
                    action: "writing",
                    path: self.inner.location().to_path_buf(),
                    source: std::io::Error::other("No space left on device"),
                });
            }
            self.inner.write_batch(items)
        }
    }
}

#[tokio::test]
async fn a_store_failure_stops_the_run_with_the_reason_and_marks_it_failed() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let server = TestServer::start(slow_routes(600, Duration::from_millis(10)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec: StoreSpec = format!("sqlite:{}", dir.path().join("kye.db").display())
        .parse()
        .unwrap();
    let batches = Arc::new(AtomicUsize::new(0));
    let store = failing_store::FailingStore {
        inner: kye_runtime::store::open_store(&spec).unwrap(),
        ok_batches: 2, // records + outcomes of the first flush
        batches: batches.clone(),
    };
    let rt = Runtime::builder()
        .registry(registry())
        .config(config(server.base_url()))
        .env(Vec::new())
        .store_instance(Box::new(store))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let err = rt
        .fetch("Pokemon.id in 1..=600")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("cannot write to the store"), "{err}");
    let runs = rt.with_store(|s| s.runs(None).unwrap());
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("No space left"),
        "{runs:?}"
    );
    // The run stopped early instead of fetching all 600 keys into the void.
    let fetched: u64 = (1..=600)
        .map(|i| server.requests(&format!("/pokemon/{i}/")))
        .sum();
    assert!(fetched < 600, "fetched {fetched}");
    // What was written before the failure is whole: every stored key has its record.
    let records = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon").limit(1000)).unwrap());
    for r in &records {
        let id = r["id"].as_i64().unwrap();
        assert_eq!(
            outcome(&rt, "Pokemon", "id", json!(id)),
            Some(KeyStatus::Stored)
        );
    }
    let failed_run = runs[0].id;
    drop(rt);

    // Space is back: the same request resumes the failed run.
    let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
    let summary = rt.fetch("Pokemon.id in 1..=600").await.unwrap();
    assert_eq!(summary.resumed_from, Some(failed_run), "{summary}");
    assert_eq!(summary.counts.skipped, records.len() as u64, "{summary}");
    assert_eq!(
        summary.counts.stored + summary.counts.skipped,
        600,
        "{summary}"
    );
    let all = rt.with_store(|s| s.records(&RecordQuery::new("Pokemon").limit(1000)).unwrap());
    assert_eq!(all.len(), 600);
}

#[tokio::test]
async fn builder_reads_kye_config_env_overrides_and_reports_progress() {
    use std::sync::{Arc, Mutex};
    let server = TestServer::start(routes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml_path = dir.path().join("custom.toml");
    // The file points at a dead port; the environment override wins.
    std::fs::write(
        &toml_path,
        "[test]\nbase_url = \"http://127.0.0.1:9\"\n[run]\nconcurrency = 2\n",
    )
    .unwrap();
    let env = vec![
        ("KYE_CONFIG".to_string(), toml_path.display().to_string()),
        (
            "KYE_TEST__BASE_URL".to_string(),
            server.base_url().to_string(),
        ),
        ("KYE_RUN__BACKOFF_BASE".to_string(), "5ms".to_string()),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let rt = Runtime::builder()
        .registry(registry())
        .env(env)
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .on_progress(move |p| seen2.lock().unwrap().push((p.counts.total(), p.total)))
        .build()
        .unwrap();
    assert_eq!(
        rt.context().config_str("run.concurrency").as_deref(),
        Some("2")
    );
    let summary = rt.fetch("Pokemon.id in 1..=3").await.unwrap();
    assert_eq!(summary.counts.stored, 3, "{summary}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.last(), Some(&(3, 3)), "{seen:?}");

    // A bad value in the environment is reported with its key.
    let err = Runtime::builder()
        .registry(registry())
        .env(vec![(
            "KYE_RUN__CONCURRENCY".to_string(),
            "many".to_string(),
        )])
        .store(format!("sqlite:{}", dir.path().join("other.db").display()))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("run.concurrency") && err.contains("many"),
        "{err}"
    );

    // Auth naming a secret nobody set stops the build, naming the secret.
    let bad = dir.path().join("auth.toml");
    std::fs::write(
        &bad,
        "[hosts.\"pokeapi.co\".auth]\ntype = \"bearer\"\nsecret = \"POKEAPI_TOKEN_UNSET\"\n",
    )
    .unwrap();
    let err = Runtime::builder()
        .registry(registry())
        .config_file(&bad)
        .env(Vec::new())
        .store(format!("sqlite:{}", dir.path().join("third.db").display()))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("POKEAPI_TOKEN_UNSET"), "{err}");
}

/// Runs in a child process (see `ctrl_c_stops_cleanly_then_resume`); does nothing otherwise.
#[test]
#[ignore = "child process helper"]
fn child_fetch_for_sigint_test() {
    let (Ok(base), Ok(db)) = (
        std::env::var("KYE_TEST_SIGINT_BASE"),
        std::env::var("KYE_TEST_SIGINT_DB"),
    ) else {
        return;
    };
    let rt = common::child_tokio();
    let summary = rt.block_on(async {
        let mut cfg = config(&base);
        cfg.set("run.concurrency", 4);
        cfg.set("run.timeout", "5s");
        cfg.set("run.grace_period", "5s");
        Runtime::builder()
            .registry(registry())
            .config(cfg)
            .env(Vec::new())
            .store(format!("sqlite:{db}"))
            .handle_ctrl_c(true)
            .build()
            .unwrap()
            .fetch("Pokemon.id in 1..=200")
            .await
            .unwrap()
    });
    println!("SUMMARY {}", serde_json::to_string(&summary).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_then_resume() {
    let server = TestServer::start(slow_routes(200, Duration::from_millis(30)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            common::test_name(module_path!(), "child_fetch_for_sigint_test").as_str(),
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KYE_TEST_SIGINT_BASE", server.base_url())
        .env("KYE_TEST_SIGINT_DB", &db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "child made no progress"
        );
        if server.stats().requests() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the child exits normally after Ctrl-C"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("SUMMARY ").map(|i| &l[i + 8..]))
        .expect("child printed its summary");
    let first: Value = serde_json::from_str(line).unwrap();
    assert_eq!(first["status"], "interrupted", "{first}");
    assert_eq!(
        first["interrupted"], 0,
        "in-flight keys finished in the grace period"
    );
    let stored_first = first["counts"]["stored"].as_u64().unwrap();
    assert!(stored_first > 0 && stored_first < 200, "{first}");
    // Everything the child fetched was written before it exited.
    assert_eq!(server.stats().requests(), stored_first, "{first}");

    let rt = runtime(server.base_url(), &db);
    let second = rt.fetch("Pokemon.id in 1..=200").await.unwrap();
    assert_eq!(second.status, RunStatus::Completed, "{second}");
    assert_eq!(second.counts.skipped, stored_first);
    assert_eq!(second.counts.stored, 200 - stored_first);
    assert_eq!(server.stats().requests(), 200, "no key fetched twice");
}

fn node_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        kye_lang::compile_str(
            "nodes.kye",
            "Node(id: Number) { name: String  next?: Node }",
        )
        .expect("node schema compiles")
    })
}

fn node_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let doc = ctx
            .get_json_value(&format!("{}/node/{id}/", base(&ctx)?))
            .await?;
        Ok(Some(doc))
    })
}

static NODE_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Node", &["id"], "node_by_id", node_by_id).build();

#[tokio::test]
async fn follow_never_fetches_a_key_twice_even_when_the_request_also_asks_for_it() {
    // Each node references the next one: 1 -> 2 -> ... -> 10.
    let routes: Routes = (1..=10)
        .map(|i| {
            (
                format!("/node/{i}/"),
                Route::json(
                    json!({"id": i, "name": format!("n{i}"), "next": {"id": i + 1}}).to_string(),
                ),
            )
        })
        .collect();
    let server = TestServer::start(routes).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::from_parts(
        [RegisteredModel::new(node_schema(), "Node").unwrap()],
        [&NODE_BY_ID],
    )
    .unwrap();
    let mut cfg = config(server.base_url());
    cfg.set("run.concurrency", 2);
    let rt = Runtime::builder()
        .registry(registry)
        .config(cfg)
        .env(Vec::new())
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let summary = rt
        .fetch(FetchRequest::new("Node.id in 1..=5").follow(2))
        .await
        .unwrap();
    // 1..=5 requested; 6 followed at depth 1, 7 at depth 2; 8 is beyond the depth.
    assert_eq!(summary.followed, 2, "{summary}");
    assert_eq!(summary.counts.stored, 7, "{summary}");
    for i in 1..=7 {
        assert_eq!(server.requests(&format!("/node/{i}/")), 1, "node {i}");
    }
    assert_eq!(server.requests("/node/8/"), 0);
}
