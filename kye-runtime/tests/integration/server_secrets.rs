//! Sealed secrets through `kye serve`: a secret sealed in the store, opened with the master
//! key, reaches the source as the configured credential, and its value is in no response
//! body or header, no log line and no byte of the store, on success and error paths alike. A
//! wrong master key is a clear error naming both keys, never garbage.

use crate::common;

use common::capture::Capture;
use common::recorder::recorder;
use kye_runtime::store::open_server_store;
use kye_runtime::testing::TestServer;
use kye_runtime::{MasterKey, Secrets, Server};

use crate::server_api::Fixture;

const VALUE: &str = "tok-SEALED-7f3a9c2e1d";

/// Runs [`child_sealed_secret`] in a process of its own: tracing's interest in a log
/// statement is cached process-wide, and other tests' threads hitting the same statements
/// without a subscriber race with the capture (lines went missing).
#[test]
fn a_sealed_secret_reaches_the_source_and_nothing_else() {
    let name = common::test_name(module_path!(), "child_sealed_secret");
    let mut child = common::spawn_self(&name, &[("KYE_TEST_SEALED_CHILD", "1".to_string())]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child test did not end in 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
}

#[tokio::test]
#[ignore = "child process helper"]
async fn child_sealed_secret() {
    if std::env::var_os("KYE_TEST_SEALED_CHILD").is_none() {
        return;
    }
    let capture = Capture::default();
    let _guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(capture.clone()));
    // The source echoes nothing back but records the request heads it received.
    let rec = recorder("{self}/").await;
    let port = rec.base.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("sqlite:{}", dir.path().join("kye.db").display())
        .parse()
        .unwrap();
    let key = MasterKey::generate().unwrap();
    let mut secrets = Secrets::empty();
    {
        let mut store = open_server_store(&spec).unwrap();
        store
            .put_secret(&key.seal("SRC_TOKEN", VALUE.as_bytes()).unwrap())
            .unwrap();
        // A wrong key: a clear error, naming the keys, not the value.
        let wrong = MasterKey::generate().unwrap();
        let e = Server::open_sealed_secrets(store.as_mut(), Some(&wrong), &mut Secrets::empty())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sealed under master key") && e.contains(key.id()) && e.contains(wrong.id()),
            "{e}"
        );
        assert!(!e.contains(VALUE));
        let e = Server::open_sealed_secrets(store.as_mut(), None, &mut Secrets::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains("KYE_MASTER_KEY"), "{e}");
        assert_eq!(
            Server::open_sealed_secrets(store.as_mut(), Some(&key), &mut secrets).unwrap(),
            1
        );
    }
    let unused = TestServer::start(kye_runtime::testing::Routes::new())
        .await
        .unwrap();
    let f = Fixture::start_with(
        unused,
        &rec.base,
        dir,
        &format!("[hosts.\"127.0.0.1:{port}\".auth]\ntype = \"bearer\"\nsecret = \"SRC_TOKEN\"\n"),
        secrets,
    )
    .await;

    let mut seen = String::new();
    let mut record = |s: u16, h: &reqwest::header::HeaderMap, b: &serde_json::Value| {
        seen.push_str(&format!("{s} {h:?} {b}\n"));
    };
    // The recorder's answer is not a Pokémon: rejected (422), an error path with the secret
    // in the request that produced it.
    let (s, h, b) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=1")
        .await;
    assert_eq!(s, 422, "{b}");
    record(s, &h, &b);
    let (s, h, b) = f
        .post("ops", "/v1/runs", r#"{"request": "Pokemon.id in 2..=4"}"#)
        .await;
    assert_eq!(s, 202, "{b}");
    record(s, &h, &b);
    let id = b["id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (s, h, b) = f.get(Some("ops"), &format!("/v1/runs/{id}")).await;
        record(s, &h, &b);
        if b["run"]["status"] != "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{b}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for path in [
        "/health",
        "/openapi.json",
        "/v1/models",
        "/v1/runs",
        "/v1/rejects",
        "/v1/drift",
        "/v1/registry",
        "/v1/audit",
        "/v1/models/Pokemon/records?id=1&max_age=1d",
    ] {
        let (s, h, b) = f.get(Some("ops"), path).await;
        assert!(s < 500, "{path}: {b}");
        record(s, &h, &b);
    }
    // The credential was used: the source saw it.
    assert!(
        rec.heads()
            .iter()
            .any(|h| h.contains(&format!("Bearer {VALUE}"))),
        "the sealed secret never reached the source"
    );
    assert!(!seen.contains(VALUE), "a response holds the secret");
    assert!(seen.contains("\"rejects\""), "{seen}");
    let logs = capture.text();
    assert!(logs.contains("request"), "nothing was logged: {logs}");
    assert!(!logs.contains(VALUE), "a log line holds the secret");
    let db = f.db.clone();
    f.stop().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let bytes = std::fs::read(&p).unwrap_or_default();
        assert!(
            !bytes.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
            "{p:?} holds the secret"
        );
    }
}
