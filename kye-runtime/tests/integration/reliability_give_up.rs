//! When kye gives up early instead of retrying in vain: a host that refuses every connection
//! (paused after a run of connection failures and, when it still cannot be reached, the run
//! ends early with one message, leaving the keys it did not attempt to the next run), and
//! content that can never parse (failed at the first attempt).

use crate::common;

use std::time::{Duration, Instant};

use kye_runtime::store::RunStatus;
use kye_runtime::testing::{Route, Routes, TestServer};
use kye_runtime::Runtime;

fn runtime(base: &str, db: &std::path::Path) -> Runtime {
    let mut config = common::config(base, 8);
    config.set("run.unreachable_after", 5);
    config.set("run.unreachable_pause", "200ms");
    Runtime::builder()
        .registry(common::registry())
        .config(config)
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_host_ends_the_run_early_and_the_next_run_resumes() {
    // A port nobody listens on: every connection is refused.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");

    let rt = runtime(&format!("http://{refused}"), &db);
    let t0 = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(30), rt.fetch("Pokemon.id in 1..=200"))
        .await
        .expect("the run ends early, well within 30 s")
        .unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(first.status, RunStatus::Interrupted, "{first}");
    let why = first.unreachable.clone().expect("the run names the host");
    let attempted = first.counts.failed;
    assert_eq!(
        why,
        format!(
            "cannot reach {refused}: {} keys not attempted, run again to resume",
            200 - attempted
        ),
    );
    assert!(attempted < 100, "{first}");
    assert_eq!(first.counts.stored, 0);
    let runs = rt.with_store(|s| s.runs(Some(1)).unwrap());
    assert_eq!(runs[0].error.as_deref(), Some(why.as_str()));
    let json = serde_json::to_value(&first).unwrap();
    assert_eq!(json["unreachable"], why.as_str());
    drop(rt);

    // The source is back: the same request resumes the run and fetches every key.
    // On a thread of its own: the routes wait by sleeping, which would stall the runtime.
    let server = TestServer::start_on_thread(common::slow_pokemon_routes(200)).unwrap();
    let rt = runtime(server.base_url(), &db);
    let second = rt.fetch("Pokemon.id in 1..=200").await.unwrap();
    assert_eq!(second.resumed_from, Some(first.run), "{second}");
    assert_eq!(second.status, RunStatus::Completed, "{second}");
    assert_eq!(second.counts.stored, 200, "{second}");
    assert_eq!(second.unreachable, None);
    assert!(serde_json::to_value(&second)
        .unwrap()
        .get("unreachable")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_can_never_parse_is_not_retried() {
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    let bodies: [Vec<u8>; 3] = [
        b"{\"id\": 1, \"name\": \"mon-\xff\xfe\", \"weight\": 11}".to_vec(),
        deep.into_bytes(),
        b"{\"id\": 3, \"name\": \"mon-3\", \"weight\": 1e400}".to_vec(),
    ];
    let mut routes = Routes::new();
    for (i, body) in bodies.into_iter().enumerate() {
        routes = routes.route(format!("/pokemon/{}/", i + 1), Route::json(body));
    }
    let server = TestServer::start(routes).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
    let summary = rt.fetch("Pokemon.id in 1..=3").await.unwrap();
    assert_eq!(summary.counts.failed, 3, "{summary}");
    assert_eq!(summary.retries, 0, "{summary}");
    for id in 1..=3 {
        assert_eq!(server.requests(&format!("/pokemon/{id}/")), 1, "key {id}");
    }
    for f in &summary.failures {
        assert!(
            f.reason.contains("retrying cannot change that"),
            "{}",
            f.reason
        );
    }
}
