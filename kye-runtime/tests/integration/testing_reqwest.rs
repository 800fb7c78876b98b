//! The loopback test server as a real pooling client (reqwest, the runtime's client) sees it:
//! connection reuse, every fault surfacing as the error a fetcher must classify, and a
//! concurrent fetch loop under seeded chaos whose outcome counts add up exactly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kye_runtime::testing::{Chaos, Fault, Route, Routes, TestServer};

fn client(timeout: Duration) -> reqwest::Client {
    // reqwest is built with `rustls-no-provider`: kye installs rustls' ring provider.
    kye_runtime::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .unwrap()
}

fn doc(id: u32) -> Route {
    Route::json(format!(
        r#"{{"id": {id}, "name": "p{id}", "species": {{"url": "{{base}}/pokemon-species/{id}/"}}}}"#
    ))
}

#[tokio::test]
async fn pooled_client_reuses_one_connection() {
    let routes: Routes = (1..=20)
        .map(|i| (format!("/pokemon/{i}/"), doc(i)))
        .collect();
    let server = TestServer::start(routes).await.unwrap();
    let http = client(Duration::from_secs(10));
    for round in 0..3 {
        for i in 1..=20 {
            let r = http
                .get(server.url(&format!("/pokemon/{i}/")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert_eq!(v["id"], i, "round {round}");
            assert_eq!(
                v["species"]["url"],
                format!("{}/pokemon-species/{i}/", server.base_url())
            );
        }
    }
    let head = http.head(server.url("/pokemon/1/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        http.get(server.url("/nope/"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(server.stats().requests(), 62);
    assert_eq!(server.connections(), 1, "keep-alive was not honoured");
}

#[tokio::test]
async fn each_fault_reaches_reqwest_as_the_error_a_fetcher_classifies() {
    let routes = Routes::new()
        .route("/500/", doc(1).always(Fault::Status(500)))
        .route("/401/", doc(1).always(Fault::Status(401)))
        .route(
            "/429/",
            doc(1).always(Fault::RateLimited {
                retry_after_secs: 3,
            }),
        )
        .route(
            "/stall/",
            doc(1).always(Fault::Stall(Duration::from_secs(5))),
        )
        .route("/close/", doc(1).always(Fault::CloseMidBody))
        .route("/truncated/", doc(1).always(Fault::TruncatedJson))
        .route("/html/", doc(1).always(Fault::NotJson))
        .route(
            "/huge/",
            doc(1).always(Fault::HugeBody { bytes: 5_000_000 }),
        )
        .route("/flaky/", doc(1).fail_first(2, Fault::Status(503)))
        .route("/ok/", doc(1));
    let server = TestServer::start(routes).await.unwrap();
    let http = client(Duration::from_millis(500));
    let get = |path: &str| http.get(server.url(path)).send();

    assert_eq!(get("/500/").await.unwrap().status(), 500);
    assert_eq!(get("/401/").await.unwrap().status(), 401);
    let r = get("/429/").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");

    let e = get("/stall/").await.unwrap_err();
    assert!(e.is_timeout(), "{e}");

    // Head arrives, body does not: the error comes when reading the body.
    let r = get("/close/").await.unwrap();
    assert_eq!(r.status(), 200);
    let e = r.bytes().await.unwrap_err();
    assert!(e.is_body() || e.is_decode(), "{e:?}");
    // The pool does not hand out the dead connection.
    assert_eq!(get("/ok/").await.unwrap().status(), 200);

    let body = get("/truncated/").await.unwrap().bytes().await.unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&body)
        .unwrap_err()
        .is_eof());

    let r = get("/html/").await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).is_err());

    // A size limit can refuse a huge body from its Content-Length, or stream and stop.
    let mut r = get("/huge/").await.unwrap();
    assert_eq!(r.content_length(), Some(5_000_000));
    let mut read = 0usize;
    while let Some(chunk) = r.chunk().await.unwrap() {
        read += chunk.len();
        if read > 1_000_000 {
            break;
        }
    }
    drop(r);
    assert!(read > 1_000_000);

    assert_eq!(get("/flaky/").await.unwrap().status(), 503);
    assert_eq!(get("/flaky/").await.unwrap().status(), 503);
    assert_eq!(get("/flaky/").await.unwrap().status(), 200);
    assert_eq!(get("/ok/").await.unwrap().status(), 200);

    let faults = server.stats().faults();
    assert_eq!(faults.values().sum::<u64>(), 10);
    assert_eq!(faults[&Fault::Status(503)], 2);
}

/// How one attempt ended, as a fetcher would classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Stored,
    Retry,
}

async fn attempt(http: &reqwest::Client, url: &str, max_body: u64) -> Outcome {
    let Ok(r) = http.get(url).send().await else {
        return Outcome::Retry; // timeout, connection error
    };
    if !r.status().is_success() || r.content_length().is_some_and(|n| n > max_body) {
        return Outcome::Retry;
    }
    match r.bytes().await {
        Ok(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(v) if v.get("id").is_some() => Outcome::Stored,
            _ => Outcome::Retry,
        },
        Err(_) => Outcome::Retry,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetch_loop_under_chaos_loses_nothing_and_counts_add_up() {
    let keys: u32 = 300;
    let routes: Routes = (1..=keys)
        .map(|i| (format!("/pokemon/{i}/"), doc(i)))
        .collect();
    let routes = routes
        .chaos(Chaos::mixed(99, 0.2, Duration::from_secs(3), 2_000_000).max_faults_per_path(4));
    let server = Arc::new(TestServer::start(routes).await.unwrap());
    let http = client(Duration::from_secs(1));

    let mut tasks = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(1));
    for _ in 0..16 {
        let (http, server, next) = (http.clone(), Arc::clone(&server), Arc::clone(&next));
        tasks.spawn(async move {
            let mut outcomes: BTreeMap<u32, Vec<Outcome>> = BTreeMap::new();
            loop {
                let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if id > keys {
                    return outcomes;
                }
                let url = server.url(&format!("/pokemon/{id}/"));
                let tries = outcomes.entry(id).or_default();
                // Four faults at most per path, so the fifth try must succeed.
                for _ in 0..5 {
                    let o = attempt(&http, &url, 1_000_000).await;
                    tries.push(o);
                    if o == Outcome::Stored {
                        break;
                    }
                }
            }
        });
    }
    let mut all = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }

    // Every key ended stored, on its last try.
    assert_eq!(all.len(), keys as usize);
    for (id, tries) in &all {
        assert_eq!(tries.last(), Some(&Outcome::Stored), "key {id}: {tries:?}");
    }
    // Client attempts and server counts agree exactly, key by key.
    let stats = server.stats();
    for (id, tries) in &all {
        let p = stats.path(&format!("/pokemon/{id}/")).unwrap();
        assert_eq!(p.requests, tries.len() as u64, "key {id}");
        assert_eq!(p.faulted(), tries.len() as u64 - 1, "key {id}");
        assert_eq!(p.clean(), 1);
    }
    let attempts: usize = all.values().map(Vec::len).sum();
    assert_eq!(stats.requests(), attempts as u64);
    assert_eq!(stats.faulted(), attempts as u64 - u64::from(keys));
    assert!(
        stats.faulted() >= 40,
        "too few faults for 20%: {}",
        stats.faulted()
    );
    assert_eq!(
        stats
            .faults()
            .keys()
            .map(Fault::kind)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        7
    );
}
