//! `kye serve` end to end: a real server on 127.0.0.1 in front of a real SQLite store and a
//! loopback source, asked with a real HTTP client (reqwest). The source's request counter
//! proves what reached it: refused requests never do, cached reads never do, and concurrent
//! reads of one key share one upstream request.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kye_runtime::store::{open_server_store, ServerStore, Timestamp, TokenRecord};
use kye_runtime::testing::{Fault, Route, TestServer};
use kye_runtime::{Runtime, ServeOptions, Server};
use serde_json::{json, Value};

pub const ROLES: &str = r#"
[roles.reader]
read = ["Pokemon"]
[roles.fetcher]
read = ["Pokemon"]
fetch = ["Pokemon"]
[roles.nobody]
fetch = []
[roles.ops]
read = ["*"]
fetch = ["*"]
backfill = ["*"]
admin = true
"#;

/// A running server with its source, store and tokens.
pub struct Fixture {
    pub base: String,
    pub source: TestServer,
    pub db: PathBuf,
    pub tokens: std::collections::HashMap<&'static str, String>,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<kye_runtime::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// The source: Pokémon 1..=100 (each after 1.5 ms), 900 invalid (weight -5), 901 failing
/// with 500 every time; anything else 404. On a thread of its own: its routes wait by
/// sleeping, which would stall a worker of the test's runtime (and the server under test).
pub async fn source() -> TestServer {
    let mut bad = common::doc(900);
    bad["weight"] = json!(-5);
    let routes = common::slow_pokemon_routes(100)
        .route("/pokemon/900/", Route::json(bad.to_string()))
        .route("/pokemon/901/", Route::text(500, "upstream is down"));
    TestServer::start_on_thread(routes).expect("source starts")
}

impl Fixture {
    /// Starts a server; `secrets` are handed to the runtime as sealed ones would be.
    pub async fn start(extra_config: &str, secrets: kye_runtime::Secrets) -> Fixture {
        let source = source().await;
        let base = source.base_url().to_string();
        Fixture::start_with(
            source,
            &base,
            tempfile::tempdir().unwrap(),
            extra_config,
            secrets,
        )
        .await
    }

    /// [`Fixture::start`] with the fetcher pointed at `base_url`, the store in `dir`.
    pub async fn start_with(
        source: TestServer,
        base_url: &str,
        dir: tempfile::TempDir,
        extra_config: &str,
        secrets: kye_runtime::Secrets,
    ) -> Fixture {
        let store = format!("sqlite:{}", dir.path().join("kye.db").display());
        Fixture::start_on(source, base_url, dir, &store, extra_config, secrets).await
    }

    /// [`Fixture::start_with`] on the store `store_spec` (SQLite or PostgreSQL).
    pub async fn start_on(
        source: TestServer,
        base_url: &str,
        dir: tempfile::TempDir,
        store_spec: &str,
        extra_config: &str,
        secrets: kye_runtime::Secrets,
    ) -> Fixture {
        Fixture::start_registry(
            common::registry(),
            source,
            base_url,
            dir,
            store_spec,
            extra_config,
            secrets,
        )
        .await
    }

    /// [`Fixture::start_on`] serving the models and fetchers of `registry` (whose fetchers
    /// read the source's address from `rel.base_url`, as [`common::registry`]'s do).
    pub async fn start_registry(
        registry: kye_runtime::Registry,
        source: TestServer,
        base_url: &str,
        dir: tempfile::TempDir,
        store_spec: &str,
        extra_config: &str,
        secrets: kye_runtime::Secrets,
    ) -> Fixture {
        let db = dir.path().join("kye.db");
        let mut config = common::config(base_url, 4);
        let roles =
            kye_runtime::Config::from_toml_str(&format!("{ROLES}\n{extra_config}"), None).unwrap();
        for key in ["roles", "serve", "hosts", "freshness"] {
            if let Some(v) = roles.get(key) {
                config.set(key, v.clone());
            }
        }
        // `[run]` keys one by one, over the test configuration's.
        if let Some(run) = roles.get("run").and_then(|v| v.as_table()) {
            for (k, v) in run {
                config.set(&format!("run.{k}"), v.clone());
            }
        }
        let runtime = Runtime::builder()
            .registry(registry)
            .config(config)
            .env(Vec::new())
            .secrets(secrets)
            .store(store_spec)
            .handle_ctrl_c(false)
            .build()
            .unwrap();
        let mut store = open_server_store(&store_spec.parse().unwrap()).unwrap();
        // A store served before (a restart) keeps its tokens: new ones get new names.
        let earlier = store.tokens().unwrap().len();
        let named = |name: &str| {
            if earlier == 0 {
                name.to_string()
            } else {
                format!("{name}-{earlier}")
            }
        };
        let mut tokens = std::collections::HashMap::new();
        for (name, role) in [
            ("reader", "reader"),
            ("fetcher", "fetcher"),
            ("nobody", "nobody"),
            ("ops", "ops"),
            ("revoked", "fetcher"),
        ] {
            tokens.insert(
                name,
                Server::issue_token(store.as_mut(), &named(name), role, None).unwrap(),
            );
        }
        store
            .revoke_token(&named("revoked"), Timestamp::now())
            .unwrap();
        let past = Timestamp::from_unix_millis(Timestamp::now().unix_millis() - 1000);
        tokens.insert(
            "expired",
            Server::issue_token(store.as_mut(), &named("expired"), "fetcher", Some(past)).unwrap(),
        );
        let options = ServeOptions::new("127.0.0.1:0".parse().unwrap())
            .with_config(runtime.context().settings())
            .unwrap()
            .grace_period(Duration::from_secs(5));
        let server = Server::bind(runtime, store, options).await.unwrap();
        if store_spec.starts_with("postgres") {
            // As `kye serve` does on PostgreSQL: queued runs show their workers.
            let spec = kye_runtime::store::PgSpec::parse(store_spec).unwrap();
            let queue = tokio::task::spawn_blocking(move || kye_runtime::Queue::open(&spec))
                .await
                .unwrap()
                .unwrap();
            server.watch_queue(queue);
        }
        let base = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        kye_runtime::http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .unwrap();
        Fixture {
            base,
            source,
            db,
            tokens,
            client,
            stop: Some(tx),
            served: Some(served),
            _dir: dir,
        }
    }

    pub fn token<'a>(&'a self, who: &'a str) -> &'a str {
        self.tokens.get(who).map(String::as_str).unwrap_or(who)
    }

    /// GET `path` as `who` (a token name of the fixture, or a raw Authorization value via
    /// `auth`); the status, headers and the body as JSON (or as a string).
    pub async fn get(
        &self,
        who: Option<&str>,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(who) = who {
            req = req.bearer_auth(self.token(who));
        }
        Self::read(req.send().await.expect("server answers")).await
    }

    pub async fn post(
        &self,
        who: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token(who))
            .header("content-type", "application/json")
            .body(body);
        Self::read(req.send().await.expect("server answers")).await
    }

    pub async fn read(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    /// Requests the source received, all paths.
    pub fn upstream(&self) -> u64 {
        self.source.stats().requests()
    }

    /// Asks the server to stop (as SIGTERM does), without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and waits for it; the store's folder lives on in the returned value.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.signal_stop();
        if let Some(h) = self.served.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("the server stops within its grace period")
                .unwrap()
                .unwrap();
        }
        self._dir
    }
}

pub fn stored_pokemon(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM \"Pokemon\"", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_matrix_refuses_before_the_source_and_reads_through_once() {
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let path = "/v1/models/Pokemon/records?id=1";
    // Refused: nothing reaches the source.
    let (s, h, body) = f.get(None, path).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
    for (who, want, says) in [
        ("not-a-token", 401, "malformed"),
        (
            "kye_0000000000000000000000000000000000000000000000000000000000000000",
            401,
            "unknown token",
        ),
        ("revoked", 401, "revoked"),
        ("expired", 401, "expired"),
        ("nobody", 403, "may not read"),
        ("reader", 404, "may not fetch"),
    ] {
        let (s, _, body) = f.get(Some(who), path).await;
        assert_eq!(s, want, "{who}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{who}: {body}"
        );
    }
    assert_eq!(f.upstream(), 0, "a refused request reached the source");

    // With fetch: fetched once, then served from the store to everyone who may read.
    let (s, _, body) = f.get(Some("fetcher"), path).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["source"], "fetched", "{body}");
    assert_eq!(body["record"], common::expected_record(1), "{body}");
    assert_eq!(f.source.requests("/pokemon/1/"), 1);
    for who in ["reader", "fetcher"] {
        let (s, _, body) = f.get(Some(who), &format!("{path}&max_age=1d")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["source"], "store", "{body}");
        assert_eq!(body["key"], json!({"id": 1}));
        assert!(body["age_seconds"].as_u64().unwrap() < 60, "{body}");
        assert_eq!(body["record"], common::expected_record(1), "{body}");
    }
    assert_eq!(f.upstream(), 1, "a read within max_age reached the source");
    // The other index works too.
    let (s, _, body) = f
        .get(Some("reader"), "/v1/models/Pokemon/records?name=mon-1")
        .await;
    assert_eq!((s, &body["source"]), (200, &json!("store")), "{body}");
    assert_eq!(f.upstream(), 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_reads_of_one_key_make_one_upstream_request_and_stale_keys_are_refetched()
{
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let f = std::sync::Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.get(Some("fetcher"), "/v1/models/Pokemon/records?id=7")
                .await
        }));
    }
    let mut fetched = 0;
    for t in tasks {
        let (s, _, body) = t.await.unwrap();
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["record"], common::expected_record(7), "{body}");
        fetched += usize::from(body["source"] == "fetched");
    }
    assert!(fetched >= 1, "no request said fetched");
    assert_eq!(
        f.source.requests("/pokemon/7/"),
        1,
        "concurrent reads each went upstream"
    );

    // Stale: older than max_age is fetched again.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (s, _, body) = f
        .get(
            Some("fetcher"),
            "/v1/models/Pokemon/records?id=7&max_age=10ms",
        )
        .await;
    assert_eq!((s, &body["source"]), (200, &json!("fetched")), "{body}");
    assert_eq!(f.source.requests("/pokemon/7/"), 2);
    // A reader (no fetch) gets the stale record, marked so, and never the source.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (s, _, body) = f
        .get(
            Some("reader"),
            "/v1/models/Pokemon/records?id=7&max_age=10ms",
        )
        .await;
    assert_eq!(
        (s, &body["source"], &body["stale"]),
        (200, &json!("store"), &json!(true)),
        "{body}"
    );
    assert_eq!(f.source.requests("/pokemon/7/"), 2);
    match std::sync::Arc::try_unwrap(f) {
        Ok(f) => drop(f.stop().await),
        Err(_) => panic!("fixture still shared"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_source_lacks_is_answered_from_the_store_until_max_age_says_ask_again() {
    let f = Fixture::start(
        "[serve]\nmissing_ttl = \"1s\"\n",
        kye_runtime::Secrets::empty(),
    )
    .await;
    let path = "/v1/models/Pokemon/records?id=555";
    let (s, _, body) = f.get(Some("fetcher"), path).await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(f.source.requests("/pokemon/555/"), 1);
    // Asked again: the store knows the source lacks it; the source is not asked.
    for _ in 0..3 {
        let (s, _, body) = f.get(Some("fetcher"), path).await;
        assert_eq!(s, 404, "{body}");
        assert_eq!(body["source"], "store", "{body}");
        assert!(body["checked_at"].is_string(), "{body}");
        assert!(body["hint"].as_str().unwrap().contains("max_age"), "{body}");
    }
    assert_eq!(
        f.source.requests("/pokemon/555/"),
        1,
        "a known-missing key reached the source"
    );
    // Within max_age: still the store's answer.
    let (s, _, _) = f.get(Some("fetcher"), &format!("{path}&max_age=1h")).await;
    assert_eq!(s, 404);
    assert_eq!(f.source.requests("/pokemon/555/"), 1);
    // Older than max_age: the source is asked again.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let (s, _, body) = f
        .get(Some("fetcher"), &format!("{path}&max_age=10ms"))
        .await;
    assert_eq!(s, 404, "{body}");
    assert_ne!(body["source"], "store", "{body}");
    assert_eq!(f.source.requests("/pokemon/555/"), 2);
    // A caller who may only read gets the same 404 without the source being asked.
    let (s, _, _) = f.get(Some("reader"), path).await;
    assert_eq!(s, 404);
    assert_eq!(f.source.requests("/pokemon/555/"), 2);
    // Without max_age the answer holds for missing_ttl (1 s here), then the source is asked.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, _, body) = f.get(Some("fetcher"), path).await;
    assert_eq!(s, 404, "{body}");
    assert_ne!(body["source"], "store", "{body}");
    assert_eq!(f.source.requests("/pokemon/555/"), 3);
}

/// A source whose answers take `slow` (key 1: `slow_first`), noting when each request came.
///
/// Answers wait with the test server's stall, not by sleeping in the route: a sleep there would
/// block one of the test runtime's two workers, and the server's tasks queued on it with it (the
/// case this test once failed on about one run in three), which no real source can do.
async fn counting_source(slow: Duration, slow_first: Duration) -> (TestServer, Arrivals) {
    let arrivals = Arrivals::default();
    let seen = arrivals.clone();
    let routes = kye_runtime::testing::Routes::new().generate("/pokemon/", move |rest| {
        let id: i64 = rest.trim_end_matches('/').parse().ok()?;
        seen.0.lock().unwrap().push(Instant::now());
        let wait = if id == 1 { slow_first } else { slow };
        Some(Route::json(common::doc(id).to_string()).always(Fault::Stall(wait)))
    });
    (
        TestServer::start(routes).await.expect("source starts"),
        arrivals,
    )
}

/// When each request reached a [`counting_source`].
#[derive(Clone, Default)]
struct Arrivals(std::sync::Arc<std::sync::Mutex<Vec<Instant>>>);

impl Arrivals {
    /// The most requests in flight at once, when each takes at least `each`: a request that
    /// came less than `each` after another came while that one was still being answered.
    fn peak(&self, each: Duration) -> usize {
        let mut at = self.0.lock().unwrap().clone();
        at.sort();
        (0..at.len())
            .map(|i| at[..=i].iter().filter(|t| at[i] - **t < each).count())
            .max()
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_fetches_share_max_fetches_slots_and_a_wait_too_long_is_503() {
    let (source, arrivals) =
        counting_source(Duration::from_millis(100), Duration::from_millis(100)).await;
    let base = source.base_url().to_string();
    let f = Fixture::start_with(
        source,
        &base,
        tempfile::tempdir().unwrap(),
        "[serve]\nmax_fetches = 2\n",
        kye_runtime::Secrets::empty(),
    )
    .await;
    let f = std::sync::Arc::new(f);
    let mut tasks = Vec::new();
    for id in 1..=8 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.get(
                Some("fetcher"),
                &format!("/v1/models/Pokemon/records?id={id}"),
            )
            .await
        }));
    }
    for t in tasks {
        let (s, _, body) = t.await.unwrap();
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["source"], "fetched", "{body}");
    }
    assert_eq!(
        arrivals.peak(Duration::from_millis(100)),
        2,
        "fetches at once, with max_fetches = 2"
    );

    // One slot, held for longer than a read waits for one: the next read of another key is
    // 503 with Retry-After, and a read the store answers does not wait at all.
    let (source, _) = counting_source(Duration::from_millis(1), Duration::from_secs(7)).await;
    let base = source.base_url().to_string();
    let f = Fixture::start_with(
        source,
        &base,
        tempfile::tempdir().unwrap(),
        "[serve]\nmax_fetches = 1\n[run]\ntimeout = \"20s\"\n",
        kye_runtime::Secrets::empty(),
    )
    .await;
    let (s, _, _) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=2")
        .await;
    assert_eq!(s, 200);
    let f = std::sync::Arc::new(f);
    let holder = {
        let f = f.clone();
        tokio::spawn(async move {
            f.get(Some("fetcher"), "/v1/models/Pokemon/records?id=1")
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (s, _, _) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=2")
        .await;
    assert_eq!(s, 200, "a stored record waits for no slot");
    assert!(started.elapsed() < Duration::from_secs(2));
    let (s, headers, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=3")
        .await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(
        headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(
        body["hint"].as_str().unwrap().contains("max_fetches"),
        "{body}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "answered 503 without waiting"
    );
    let (s, _, body) = holder.await.unwrap();
    assert_eq!(s, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_missing_and_unreachable_records_answer_422_404_502_with_what_to_do() {
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let (s, _, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=900")
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body["errors"].to_string().contains("weight"), "{body}");
    let (s, _, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=555")
        .await;
    assert_eq!(s, 404, "{body}");
    let (s, _, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=901")
        .await;
    assert_eq!(s, 502, "{body}");
    assert!(
        body["hint"].as_str().unwrap().contains("try again"),
        "{body}"
    );
    assert_eq!(stored_pokemon(&f.db), 0, "nothing is stored");
    // The reject is listed, the audit log tells each request's outcome.
    let (s, _, body) = f.get(Some("reader"), "/v1/rejects").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["rejects"].as_array().unwrap().len(), 1, "{body}");
    let (s, _, body) = f.get(Some("ops"), "/v1/audit?limit=10").await;
    assert_eq!(s, 200, "{body}");
    let rows = body["audit"].as_array().unwrap();
    let statuses: Vec<u64> = rows
        .iter()
        .filter(|r| r["action"] == "read")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [502, 404, 422], "{body}");
    assert!(
        rows.iter()
            .filter(|r| r["action"] == "read")
            .all(|r| r["token"] == "fetcher" && r["source"] == "fetched"),
        "{body}"
    );
    let (s, _, _) = f.get(Some("reader"), "/v1/audit").await;
    assert_eq!(s, 403);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_4xx_stores_nothing_and_the_server_stays_up() {
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let long = "9".repeat(20_000);
    for (who, path, want) in [
        (
            "ops",
            "/v1/models/Pokemon'%3B%20DROP%20TABLE%20%22Pokemon%22%3B--/records?id=1".to_string(),
            404,
        ),
        (
            "reader",
            "/v1/models/Pokemon'%3B%20DROP%20TABLE%20x%3B--/records?id=1".to_string(),
            403,
        ),
        (
            "ops",
            "/v1/models/Pokemon/records?id%3Brm%20-rf%20%2F=1".to_string(),
            400,
        ),
        (
            "ops",
            "/v1/models/Pokemon/records?id=1%20OR%201%3D1".to_string(),
            400,
        ),
        // By an index without a fetcher: looked up in the store only (not there: 404).
        (
            "ops",
            "/v1/models/Pokemon/records?name=%24(touch%20%2Ftmp%2Fkye-pwned)%60id%60".to_string(),
            404,
        ),
        ("ops", "/v1/models/Pokemon/records".to_string(), 400),
        (
            "ops",
            "/v1/models/Pokemon/records?id=1&max_age=forever".to_string(),
            400,
        ),
        ("ops", "/v1/models/Nope/records?id=1".to_string(), 404),
        ("ops", format!("/v1/models/Pokemon/records?id={long}"), 414),
        ("ops", "/v1/runs/abc".to_string(), 400),
        ("ops", "/v1/nowhere".to_string(), 404),
        (
            "ops",
            "/v1/models/Pokemon/records?id=%FF%FE".to_string(),
            400,
        ),
    ] {
        let (s, _, body) = f.get(Some(who), &path).await;
        assert_eq!(s, want, "{}: {body}", &path[..path.len().min(120)]);
        assert!(body.get("error").is_some(), "{body}");
    }
    assert!(!Path::new("/tmp/kye-pwned").exists());
    for (body, want) in [
        ("{not json".to_string(), 400),
        ("{\"request\": 5}".to_string(), 400),
        (
            "{\"request\": \"Pokemon.id = 1\", \"extra\": 1}".to_string(),
            400,
        ),
        (
            "{\"request\": \"Pokemon.id = 1; DROP TABLE x\"}".to_string(),
            400,
        ),
        (
            "{\"request\": \"Pokemon.id = 1\", \"follow\": \"deep\"}".to_string(),
            400,
        ),
        (format!("{{\"request\": \"{}\"}}", "x".repeat(1 << 20)), 413),
    ] {
        let (s, _, resp) = f.post("ops", "/v1/runs", body).await;
        assert_eq!(s, want, "{resp}");
    }
    let (s, _, body) = f.get(None, "/health").await;
    assert_eq!((s, body), (200, json!({"status": "ok"})));
    assert_eq!(stored_pokemon(&f.db), 0, "hostile input stored something");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_start_with_202_and_report_progress_and_roles_limit_what_is_listed() {
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let (s, _, body) = f
        .post(
            "reader",
            "/v1/runs",
            r#"{"request": "Pokemon.id in 1..=20"}"#,
        )
        .await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(f.upstream(), 0);
    let (s, _, body) = f
        .post(
            "ops",
            "/v1/runs",
            r#"{"request": "Pokemon.id in 1..=20", "follow": true}"#,
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let (s, _, body) = f.get(Some("reader"), &format!("/v1/runs/{id}")).await;
        assert_eq!(s, 200, "{body}");
        if body["run"]["status"] != "running" {
            break body;
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["run"]["status"], "completed", "{run}");
    assert_eq!(run["progress"]["stored"], 20, "{run}");
    assert_eq!(stored_pokemon(&f.db), 20);
    let (s, _, body) = f.get(Some("reader"), "/v1/runs").await;
    assert_eq!(s, 200);
    assert_eq!(body["runs"][0]["id"], id, "{body}");
    let (s, _, body) = f.get(Some("nobody"), "/v1/runs").await;
    assert_eq!(
        (s, body["runs"].as_array().unwrap().len()),
        (200, 0),
        "{body}"
    );
    let (s, _, body) = f.get(Some("nobody"), &format!("/v1/runs/{id}")).await;
    assert_eq!(s, 404, "{body}");
    // What each may read.
    let (_, _, body) = f.get(Some("reader"), "/v1/models").await;
    assert_eq!(
        body,
        json!({"models": [{"name": "Pokemon", "read": true, "fetch": false, "backfill": false}]})
    );
    let (_, _, body) = f.get(Some("nobody"), "/v1/models").await;
    assert_eq!(body, json!({"models": []}));
    let (s, _, body) = f.get(Some("reader"), "/v1/registry").await;
    assert_eq!(s, 200);
    assert!(body.to_string().contains("pokemon_by_id"), "{body}");
    let (s, _, body) = f.get(Some("reader"), "/v1/drift").await;
    assert_eq!(s, 200, "{body}");
    // The fetcher maps exactly the model's fields: no drift.
    assert_eq!(body["drift"], json!([]), "{body}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_limit_gets_429_with_retry_after() {
    let f = Fixture::start("[serve]\nrate_limit = 3\n", kye_runtime::Secrets::empty()).await;
    for _ in 0..3 {
        let (s, _, _) = f.get(Some("reader"), "/v1/models").await;
        assert_eq!(s, 200);
    }
    let (s, h, body) = f.get(Some("reader"), "/v1/models").await;
    assert_eq!(s, 429, "{body}");
    let wait: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Another token has its own budget.
    let (s, _, _) = f.get(Some("ops"), "/v1/models").await;
    assert_eq!(s, 200);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_server_has() {
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let (s, _, doc) = f.get(None, "/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut listed = Vec::new();
    for (path, ops) in paths {
        for (method, _) in ops.as_object().unwrap() {
            listed.push((method.clone(), path.clone()));
            let concrete = path.replace("{model}", "Pokemon").replace("{id}", "1");
            let concrete = if concrete.ends_with("/records") {
                format!("{concrete}?id=1")
            } else {
                concrete
            };
            let (s, _, body) = match method.as_str() {
                "get" => f.get(Some("ops"), &concrete).await,
                "post" => {
                    f.post("ops", &concrete, r#"{"request": "Pokemon.id = 2"}"#)
                        .await
                }
                other => panic!("unexpected method {other}"),
            };
            assert_ne!(
                body["error"], "no such route",
                "{method} {path}: the server has no such route"
            );
            assert_ne!(s, 405, "{method} {path}");
            assert!(s < 500, "{method} {path}: {s} {body}");
        }
    }
    // Every route the server answers is in the document: these are the router's.
    let mut routes = vec![
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/v1/models"),
        ("get", "/v1/models/{model}/records"),
        ("get", "/v1/runs"),
        ("post", "/v1/runs"),
        ("get", "/v1/runs/{id}"),
        ("get", "/v1/rejects"),
        ("get", "/v1/drift"),
        ("get", "/v1/registry"),
        ("get", "/v1/audit"),
        ("get", "/v1/freshness"),
    ];
    routes.sort();
    let mut listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|(m, p)| (m.as_str(), p.as_str()))
        .collect();
    listed.sort();
    assert_eq!(listed, routes);
    // And a route not in it is the server's 404.
    let (s, _, body) = f.get(Some("ops"), "/v1/secrets").await;
    assert_eq!((s, &body["error"]), (404, &json!("no such route")));
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_only_as_hashes_and_names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("sqlite:{}", dir.path().join("kye.db").display())
        .parse()
        .unwrap();
    let mut store = open_server_store(&spec).unwrap();
    let token = Server::issue_token(store.as_mut(), "ci-bot", "ops", None).unwrap();
    let e = Server::issue_token(store.as_mut(), "ci-bot", "ops", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a token of that name exists"), "{e}");
    let e = Server::issue_token(store.as_mut(), "a b;--", "ops", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be stored"), "{e}");
    let listed: Vec<TokenRecord> = store.tokens().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_active(Timestamp::now()));
    drop(store);
    let bytes = std::fs::read(dir.path().join("kye.db")).unwrap();
    let wal = std::fs::read(dir.path().join("kye.db-wal")).unwrap_or_default();
    for b in [&bytes, &wal] {
        assert!(
            !b.windows(token.len()).any(|w| w == token.as_bytes()),
            "the token is in the store"
        );
    }
    let dir_spec = format!("dir:{}", dir.path().join("d").display())
        .parse()
        .unwrap();
    let e = open_server_store(&dir_spec)
        .err()
        .expect("dir refused")
        .to_string();
    assert!(e.contains("directory store cannot"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_requests_in_flight_finish_and_leaves_backfills_resumable() {
    use kye_runtime::testing::{Fault, Routes};
    // Every Pokémon after 100 ms.
    let routes = Routes::new().generate("/pokemon/", |rest| {
        let id: i64 = rest.trim_end_matches('/').parse().ok()?;
        (1..=200).contains(&id).then(|| {
            Route::json(common::doc(id).to_string())
                .always(Fault::Stall(Duration::from_millis(100)))
        })
    });
    let source = TestServer::start(routes).await.unwrap();
    let base = source.base_url().to_string();
    let mut f = Fixture::start_with(
        source,
        &base,
        tempfile::tempdir().unwrap(),
        "",
        kye_runtime::Secrets::empty(),
    )
    .await;
    let (s, _, body) = f
        .post("ops", "/v1/runs", r#"{"request": "Pokemon.id in 1..=200"}"#)
        .await;
    assert_eq!(s, 202, "{body}");
    let run = body["id"].as_i64().unwrap();
    // A read in flight when the stop comes.
    let url = format!("{}/v1/models/Pokemon/records?id=150", f.base);
    let req = f.client.get(url).bearer_auth(f.token("fetcher")).send();
    let in_flight = tokio::spawn(req);
    tokio::time::sleep(Duration::from_millis(50)).await;
    f.signal_stop();
    let resp = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    let (s, _, body) = Fixture::read(resp).await;
    assert_eq!((s, &body["source"]), (200, &json!("fetched")), "{body}");
    let db = f.db.clone();
    let base = f.base.clone();
    let _dir = f.stop().await;
    // Stopped: no new connections; the backfill was stopped and is resumable.
    assert!(reqwest::get(format!("{base}/health")).await.is_err());
    let spec = format!("sqlite:{}", db.display()).parse().unwrap();
    let reader = kye_runtime::store::open_store_read_only(&spec).unwrap();
    let info = reader.run(kye_runtime::RunId(run)).unwrap().unwrap();
    assert_eq!(info.status, kye_runtime::RunStatus::Interrupted, "{info:?}");
    assert!(info.counts.stored < 200, "{info:?}");
}

/// The PostgreSQL store spec of a schema of its own named `name_PID` at `KYE_TEST_POSTGRES`,
/// with the server's URL; `None` (saying so) when nothing answers there, outside CI.
pub fn postgres_spec(name: &str) -> Option<(String, String)> {
    let url = std::env::var("KYE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    // The blocking client runs its own runtime: only ever on a thread of its own.
    let u = url.clone();
    let reachable =
        std::thread::spawn(move || postgres::Client::connect(&u, postgres::NoTls).map(drop))
            .join()
            .unwrap();
    match reachable {
        Ok(()) => {}
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true: PostgreSQL at {url} does not answer: {e}")
        }
        Err(e) => {
            eprintln!("skipping: nothing answers at {url} ({e})");
            return None;
        }
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let spec = format!("{url}{sep}schema={name}_{}", std::process::id());
    Some((url, spec))
}

/// Drops the schema `name_PID` that [`postgres_spec`] named.
pub fn drop_postgres_schema(url: &str, name: &str) {
    let (url, schema) = (url.to_string(), format!("{name}_{}", std::process::id()));
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .unwrap();
    })
    .join()
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_records_are_refreshed_in_the_background_and_freshness_is_reported() {
    refreshed_and_reported(None).await;
}

/// The same on PostgreSQL (skipped, saying so, when nothing answers at `KYE_TEST_POSTGRES`,
/// outside CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_records_are_refreshed_and_freshness_is_reported_on_postgresql() {
    let Some((url, spec)) = postgres_spec("kye_fresh") else {
        return;
    };
    refreshed_and_reported(Some(&spec)).await;
    drop_postgres_schema(&url, "kye_fresh");
}

/// Three keys read through, reported fresh, then refreshed by the server once older than
/// `max_age`; on SQLite, or on the store `store_spec`.
async fn refreshed_and_reported(store_spec: Option<&str>) {
    let config = "[freshness]\nPokemon = { max_age = \"300ms\", error = \"1ms\" }\n[serve]\nrefresh_every = \"100ms\"\n";
    let f = match store_spec {
        None => Fixture::start(config, kye_runtime::Secrets::empty()).await,
        Some(spec) => {
            let source = source().await;
            let base = source.base_url().to_string();
            let dir = tempfile::tempdir().unwrap();
            let secrets = kye_runtime::Secrets::empty();
            Fixture::start_on(source, &base, dir, spec, config, secrets).await
        }
    };
    for id in 1..=3 {
        let (s, _, body) = f
            .get(
                Some("fetcher"),
                &format!("/v1/models/Pokemon/records?id={id}"),
            )
            .await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _, body) = f.get(Some("reader"), "/v1/freshness").await;
    assert_eq!(s, 200, "{body}");
    let m = &body["models"][0];
    assert_eq!(
        (&m["model"], &m["fresh"], &m["stale"]),
        (&json!("Pokemon"), &json!(3), &json!(0)),
        "{body}"
    );
    assert_eq!(m["error"], true, "older than 1 ms: {body}");
    // Older than 300 ms: fetched again by the server, without any request asking.
    let deadline = Instant::now() + Duration::from_secs(15);
    while (1..=3).any(|id| f.source.requests(&format!("/pokemon/{id}/")) < 2) {
        assert!(Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Keys never stored are not fetched by the refresher.
    assert_eq!(f.source.requests("/pokemon/4/"), 0);
    let (_, _, body) = f.get(Some("reader"), "/v1/freshness").await;
    assert!(body["models"][0]["next_refresh"].is_string(), "{body}");
    let (_, _, body) = f.get(Some("nobody"), "/v1/freshness").await;
    assert_eq!(body, json!({"models": []}));
    f.stop().await;
}

/// The same server on PostgreSQL: tokens, read-through and the audit log in the warehouse
/// (skipped, saying so, when nothing answers at `KYE_TEST_POSTGRES`, outside CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_postgresql_too() {
    let Some((url, spec)) = postgres_spec("kye_serve") else {
        return;
    };
    let schema = format!("kye_serve_{}", std::process::id());
    let source = source().await;
    let base = source.base_url().to_string();
    let f = Fixture::start_on(
        source,
        &base,
        tempfile::tempdir().unwrap(),
        &spec,
        "",
        kye_runtime::Secrets::empty(),
    )
    .await;
    assert_eq!(
        f.get(Some("revoked"), "/v1/models/Pokemon/records?id=3")
            .await
            .0,
        401
    );
    assert_eq!(f.upstream(), 0);
    let (s, _, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=3")
        .await;
    assert_eq!((s, &body["source"]), (200, &json!("fetched")), "{body}");
    let (s, _, body) = f
        .get(Some("reader"), "/v1/models/Pokemon/records?id=3&max_age=1h")
        .await;
    assert_eq!((s, &body["source"]), (200, &json!("store")), "{body}");
    assert_eq!(body["record"], common::expected_record(3), "{body}");
    assert_eq!(f.upstream(), 1);
    let (s, _, body) = f.get(Some("ops"), "/v1/audit").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["audit"].as_array().unwrap().len(), 3, "{body}");
    // A queued run, as workers leave it: w1 committed a batch of 2 keys in 2 s, w2 holds one.
    let (u, sch) = (url.clone(), schema.clone());
    let run: i64 = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&u, postgres::NoTls).unwrap();
        c.batch_execute(&format!("SET search_path TO \"{sch}\""))
            .unwrap();
        let run: i64 = c
            .query_one(
                "INSERT INTO _kye_runs (request, started_at, status, pid) \
                 VALUES ('Pokemon.id in 4..=7', now(), 'running', 1) RETURNING id",
                &[],
            )
            .unwrap()
            .get(0);
        c.execute(
            "INSERT INTO _kye_queue_runs (run_id, follow, max_attempts, state, created_at) \
             VALUES ($1, 0, 3, 'open', now())",
            &[&run],
        )
        .unwrap();
        c.execute(
            "INSERT INTO _kye_queue_batches (run_id, model, fetcher, depth, keys, state, worker, \
               attempts, stored, created_at, claimed_at, finished_at) \
             VALUES ($1, 'Pokemon', 'id', 0, '[]', 'done', 'w1', 1, 2, now(), \
               now() - interval '3 s', now() - interval '1 s')",
            &[&run],
        )
        .unwrap();
        c.execute(
            "INSERT INTO _kye_queue_batches (run_id, model, fetcher, depth, keys, state, worker, \
               lease, lease_until, attempts, created_at, claimed_at) \
             VALUES ($1, 'Pokemon', 'id', 0, '[]', 'claimed', 'w2', 7, \
               now() + interval '30 s', 1, now(), now())",
            &[&run],
        )
        .unwrap();
        run
    })
    .join()
    .unwrap();
    let (s, _, body) = f.get(Some("ops"), &format!("/v1/runs/{run}")).await;
    assert_eq!(s, 200, "{body}");
    let q = &body["queue"];
    assert_eq!(
        (&q["state"], &q["done"], &q["claimed"]),
        (&json!("open"), &json!(1), &json!(1)),
        "{body}"
    );
    let workers = q["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{body}");
    assert_eq!(
        (
            &workers[0]["worker"],
            &workers[0]["done"],
            &workers[0]["keys"]
        ),
        (&json!("w1"), &json!(1), &json!(2))
    );
    let rate = workers[0]["keys_per_second"].as_f64().expect("w1's rate");
    assert!((0.9..=1.1).contains(&rate), "2 keys in 2 s: {rate}");
    assert_eq!(
        (&workers[1]["worker"], &workers[1]["batches"]),
        (&json!("w2"), &json!(1))
    );
    assert!(
        workers[1]["expires"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    assert!(workers[1]["keys_per_second"].is_null());
    f.stop().await;
    // Pruning the audit log deletes the rows past their retention only.
    let spec2 = spec.clone();
    let (pruned, left) = std::thread::spawn(move || {
        let mut store = open_server_store(&spec2.parse().unwrap()).unwrap();
        let now = Timestamp::now().unix_millis();
        store
            .append_audit(&[kye_runtime::store::AuditEntry {
                time: Timestamp::from_unix_millis(now - 2 * 86_400_000),
                token: None,
                action: "refused".into(),
                model: None,
                key: None,
                source: None,
                status: 401,
            }])
            .unwrap();
        let pruned = store
            .prune_audit(Timestamp::from_unix_millis(now - 86_400_000), 100)
            .unwrap();
        // Catalog sessions: open, found while open, gone when ended or past their time.
        let session = |id: &str, expires: i64| kye_runtime::store::SessionRecord {
            id_hash: id.into(),
            token_hash: "t".into(),
            csrf: "c".into(),
            expires: Timestamp::from_unix_millis(expires),
        };
        let at = Timestamp::now();
        store.open_session(&session("a", now + 60_000), at).unwrap();
        store.open_session(&session("b", now + 1_000), at).unwrap();
        assert_eq!(
            store.session("a", at).unwrap(),
            Some(session("a", now + 60_000))
        );
        let later = Timestamp::from_unix_millis(now + 2_000);
        assert_eq!(store.session("b", later).unwrap(), None, "past its time");
        store.close_session("a").unwrap();
        assert_eq!(store.session("a", at).unwrap(), None, "ended");
        (pruned, store.audit(100).unwrap().len())
    })
    .join()
    .unwrap();
    assert_eq!((pruned, left), (1, 5));
    let tokens: i64 = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let n = c
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\"._kye_tokens"),
                &[],
            )
            .unwrap()
            .get(0);
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .unwrap();
        n
    })
    .join()
    .unwrap();
    assert_eq!(tokens, 6);
}

/// 300 Pokémon, each after 10 ms: a backfill long enough to kill the server in.
async fn slow_source() -> TestServer {
    use kye_runtime::testing::{Fault, Routes};
    let routes = Routes::new().generate("/pokemon/", |rest| {
        let id: i64 = rest.trim_end_matches('/').parse().ok()?;
        (1..=300).contains(&id).then(|| {
            Route::json(common::doc(id).to_string()).always(Fault::Stall(Duration::from_millis(10)))
        })
    });
    TestServer::start(routes).await.unwrap()
}

const KILL_REQUEST: &str = r#"{"request": "Pokemon.id in 1..=300"}"#;

/// kill -9 of the server in the middle of a backfill started through the API; a new server on
/// the same store is asked for the same backfill: it resumes the killed run, and every key is
/// stored exactly once.
#[test]
fn a_backfill_of_a_server_killed_mid_run_resumes_on_restart_with_each_key_once() {
    let rt = common::child_tokio();
    let source = rt.block_on(slow_source());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let name = common::test_name(module_path!(), "child_serving_a_backfill");
    let mut child = common::spawn_self(
        &name,
        &[
            ("KYE_TEST_SERVE_DB", db.display().to_string()),
            ("KYE_TEST_SERVE_BASE", source.base_url().to_string()),
        ],
    );
    // Killed once it has stored some keys, well before all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the child stored nothing in 60 s"
        );
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the child ended before the kill: {status} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stored =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|c| {
                    c.query_row(r#"SELECT count(*) FROM "Pokemon""#, [], |r| {
                        r.get::<_, i64>(0)
                    })
                })
                .unwrap_or(0);
        if stored >= 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let (killed_rows, _, _, _) = common::sqlite_facts(&db);
    assert!(killed_rows < 300, "the backfill ended before the kill");
    // Records and their keys' outcomes are two transactions: the keys the resumed run may
    // skip are those whose outcome the killed run committed (rows written without one are
    // fetched again and upserted, never duplicated).
    let done_before_kill: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM _kye_keys WHERE status = 'stored'",
            [],
            |r| r.get(0),
        )
        .unwrap();

    rt.block_on(async {
        let base = source.base_url().to_string();
        let store = format!("sqlite:{}", db.display());
        let f = Fixture::start_on(
            source,
            &base,
            dir,
            &store,
            "",
            kye_runtime::Secrets::empty(),
        )
        .await;
        let (s, _, body) = f.post("ops", "/v1/runs", KILL_REQUEST).await;
        assert_eq!(s, 202, "{body}");
        let id = body["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let run = loop {
            let (_, _, body) = f.get(Some("ops"), &format!("/v1/runs/{id}")).await;
            if body["run"]["status"] != "running" {
                break body;
            }
            assert!(Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(run["run"]["status"], "completed", "{run}");
        assert!(
            run["run"]["resumed_from"].is_i64(),
            "the run did not resume the killed one: {run}"
        );
        let skipped = run["run"]["counts"]["skipped"].as_i64().unwrap();
        assert!(
            skipped >= done_before_kill && done_before_kill <= killed_rows,
            "{done_before_kill} keys done before the kill: {run}"
        );
        let db = f.db.clone();
        let _dir = f.stop().await;
        let (rows, distinct, children, check) = common::sqlite_facts(&db);
        assert_eq!(check, "ok");
        assert_eq!((rows, distinct), (300, 300), "each key exactly once");
        assert_eq!(children, common::expected_children(1..=300));
    });
}

#[test]
#[ignore = "child process helper"]
fn child_serving_a_backfill() {
    let (Ok(db), Ok(base)) = (
        std::env::var("KYE_TEST_SERVE_DB"),
        std::env::var("KYE_TEST_SERVE_BASE"),
    ) else {
        return;
    };
    let rt = common::child_tokio();
    rt.block_on(async {
        let db = PathBuf::from(db);
        let dir = tempfile::tempdir().unwrap();
        // The fixture's source is unused: the fetcher reads from the parent's.
        let unused = TestServer::start(kye_runtime::testing::Routes::new())
            .await
            .unwrap();
        let store = format!("sqlite:{}", db.display());
        let f = Fixture::start_on(
            unused,
            &base,
            dir,
            &store,
            "",
            kye_runtime::Secrets::empty(),
        )
        .await;
        let (s, _, body) = f.post("ops", "/v1/runs", KILL_REQUEST).await;
        assert_eq!(s, 202, "{body}");
        // Serves until killed (bounded: the parent kills it within a minute).
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

#[allow(dead_code)]
fn _store_is_object_safe(_: &dyn ServerStore) {}

/// Sends `request` on `conn` and reads one response's head and status (the body is short and
/// its length given), or `None` when the server closed the connection.
async fn exchange(conn: &mut tokio::net::TcpStream, request: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let head = &text[..head_end];
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + len {
                return head.split(' ').nth(1).and_then(|s| s.parse().ok());
            }
        }
    }
}

/// Waits up to `within` for the server to close `conn`; how long that took.
async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(started.elapsed()),
            conn.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_and_the_cap_makes_new_ones_wait() {
    const GET: &str = "GET /health HTTP/1.1\r\nhost: kye\r\n\r\n";
    let f = Fixture::start(
        "[serve]\nheader_timeout = \"600ms\"\nmax_connections = 2\n",
        kye_runtime::Secrets::default(),
    )
    .await;
    let addr = f.base.trim_start_matches("http://").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    // A kept-alive connection that goes on asking is served past the timeout: it is a limit
    // on waiting for a request, not on a connection's life.
    let mut busy = connect().await.unwrap();
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(exchange(&mut busy, GET).await, Some(200));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(started.elapsed() > Duration::from_millis(900));
    assert_eq!(exchange(&mut busy, GET).await, Some(200));
    drop(busy);

    // Two clients take both connections: one trickles half a request, one idles after its
    // answer. A third connects at once, but its request is answered only when the timeout
    // frees a slot, not before and not refused.
    let mut trickler = connect().await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        trickler
            .write_all(b"GET /health HTTP/1.1\r\nhost: ky")
            .await
            .unwrap();
    }
    let mut idler = connect().await.unwrap();
    assert_eq!(exchange(&mut idler, GET).await, Some(200));
    let slots_taken = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange(&mut third, GET))
        .await
        .expect("the third client is answered once a slot frees");
    assert_eq!(answer, Some(200));
    let waited = slots_taken.elapsed();
    assert!(
        waited >= Duration::from_millis(450),
        "answered after {waited:?}: the cap of 2 connections did not hold"
    );
    // Both slow clients were cut by the server (reading gives end of stream), within a few
    // timeouts even on a busy machine.
    let cut = closed_within(&mut trickler, Duration::from_secs(10)).await;
    assert!(cut.is_some(), "the trickling client is still connected");
    let cut = closed_within(&mut idler, Duration::from_secs(10)).await;
    assert!(cut.is_some(), "the idle client is still connected");
    // And the server goes on answering.
    let (status, _, _) = f.get(None, "/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_with_too_many_refused_tokens_is_refused_before_any_lookup() {
    let f = Fixture::start(
        "[serve]\nfailed_auth_limit = 3\n",
        kye_runtime::Secrets::default(),
    )
    .await;
    // Requests that present no token do not count against the address.
    for _ in 0..5 {
        let (status, _, _) = f.get(None, "/v1/models").await;
        assert_eq!(status, 401);
    }
    let (status, _, body) = f.get(Some("reader"), "/v1/models").await;
    assert_eq!(status, 200, "{body}");
    let wrong = format!("kye_{}", "0".repeat(64));
    for _ in 0..3 {
        let (status, _, _) = f.get(Some(&wrong), "/v1/models").await;
        assert_eq!(status, 401);
    }
    // The fourth request from this address is refused whatever it carries, a good token too.
    let (status, headers, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=1")
        .await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert!(
        body.to_string().contains("too many refused tokens"),
        "{body}"
    );
    assert_eq!(
        f.source.requests("/pokemon/1/"),
        0,
        "a refused request reached the source"
    );
    // Another address (127.0.0.2 is loopback too) is not affected.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = other
        .get(format!("{}/v1/models/Pokemon/records?id=1", f.base))
        .bearer_auth(f.token("fetcher"))
        .send()
        .await
        .expect("server answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(f.source.requests("/pokemon/1/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_rows_past_their_retention_are_deleted_at_start() {
    use kye_runtime::store::AuditEntry;
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("sqlite:{}", dir.path().join("kye.db").display());
    let now = Timestamp::now().unix_millis();
    let row = |age_ms: i64, key: &str| AuditEntry {
        time: Timestamp::from_unix_millis(now - age_ms),
        token: Some("alice".into()),
        action: "read".into(),
        model: Some("Pokemon".into()),
        key: Some(key.into()),
        source: Some("store".into()),
        status: 200,
    };
    {
        let mut store = open_server_store(&spec.parse().unwrap()).unwrap();
        store
            .append_audit(&[
                row(3 * 86_400_000, "old"),
                row(2 * 86_400_000, "older than a day"),
                row(3_600_000, "an hour ago"),
            ])
            .unwrap();
    }
    let source = source().await;
    let base = source.base_url().to_string();
    let f = Fixture::start_on(
        source,
        &base,
        dir,
        &spec,
        "[serve]\naudit_retention = \"1d\"\n",
        kye_runtime::Secrets::default(),
    )
    .await;
    let mut store = open_server_store(&spec.parse().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let keys = loop {
        let keys: Vec<String> = store
            .audit(100)
            .unwrap()
            .into_iter()
            .filter_map(|a| a.key)
            .collect();
        if !keys.iter().any(|k| k.starts_with("old")) || Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(keys, vec!["an hour ago".to_string()], "rows kept");
    // The server goes on recording.
    let (status, _, _) = f.get(Some("ops"), "/v1/models").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut_and_frees_its_slot() {
    use tokio::io::AsyncWriteExt;
    const GET: &str = "GET /health HTTP/1.1\r\nhost: kye\r\n\r\n";
    let f = Fixture::start(
        "[serve]\nheader_timeout = \"500ms\"\nmax_connections = 1\n",
        kye_runtime::Secrets::default(),
    )
    .await;
    let addr: std::net::SocketAddr = f.base.trim_start_matches("http://").parse().unwrap();
    // A client with a small receive buffer that pipelines requests and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stuck = socket.connect(addr).await.unwrap();
    let (unread, mut w) = stuck.into_split();
    let writer = tokio::spawn(async move {
        let burst = "GET /openapi.json HTTP/1.1\r\nhost: kye\r\n\r\n".repeat(200);
        for _ in 0..50 {
            if w.write_all(burst.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // It holds the only slot; another client is answered once the server has cut it.
    let mut other = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), exchange(&mut other, GET))
        .await
        .expect("answered once the client that does not read was cut");
    assert_eq!(answer, Some(200));
    writer.abort();
    drop(unread);
}
