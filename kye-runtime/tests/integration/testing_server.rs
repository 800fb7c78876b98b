//! The loopback test server, driven by a raw TCP client so every byte on the wire is checked:
//! routes, keep-alive, each injected fault, malformed requests, seeded chaos and shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kye_runtime::testing::{Chaos, Fault, Route, Routes, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as read off the wire.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `Content-Length` was announced but the connection ended before that many bytes came.
    short_body: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length").unwrap().parse().unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
    }
}

/// A minimal HTTP/1.1 client over one connection, reading `Content-Length`-framed responses.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.unwrap();
    }

    async fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .await;
        self.read_response(false).await.expect("a response")
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response; `None` if the connection closed before a full head.
    async fn read_response(&mut self, head_only: bool) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
            short_body: false,
        };
        if head_only {
            return Some(response);
        }
        let want = response.content_length();
        while self.buf.len() < want {
            if !self.fill().await {
                response.short_body = true;
                break;
            }
        }
        let take = want.min(self.buf.len());
        response.body = self.buf.drain(..take).collect();
        Some(response)
    }

    /// True once the server has closed the connection (after draining what it sent).
    async fn closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// One request on a fresh connection.
async fn get(server: &TestServer, path: &str) -> Response {
    Client::connect(server.addr()).await.get(path).await
}

fn pikachu() -> Route {
    Route::json(
        r#"{"id": 25, "name": "pikachu", "types": [{"slot": 1, "type": {"name": "electric", "url": "{base}/type/13/"}}]}"#,
    )
}

#[tokio::test]
async fn serves_routes_with_base_url_and_counts_requests() {
    let server = TestServer::start(Routes::new().route("/pokemon/25/", pikachu()))
        .await
        .unwrap();
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    assert!(!server.base_url().ends_with('/'));

    let r = get(&server, "/pokemon/25/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json().unwrap();
    assert_eq!(
        doc["types"][0]["type"]["url"],
        format!("{}/type/13/", server.base_url())
    );

    // Without the trailing slash, with a query string, and in absolute form: same route.
    assert_eq!(get(&server, "/pokemon/25").await.status, 200);
    assert_eq!(get(&server, "/pokemon/25/?limit=1").await.status, 200);
    let absolute = format!("{}/pokemon/25/", server.base_url());
    assert_eq!(get(&server, &absolute).await.status, 200);

    let missing = get(&server, "/pokemon/151/").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "Not Found");

    assert_eq!(server.requests("/pokemon/25/"), 4);
    assert_eq!(server.requests("/pokemon/25"), 4);
    assert_eq!(server.requests("/pokemon/151/"), 1);
    assert_eq!(server.requests("/never/"), 0);
    let stats = server.stats();
    assert_eq!(stats.requests(), 5);
    assert_eq!(stats.faulted(), 0);
    server.reset_stats();
    assert_eq!(server.stats().requests(), 0);
}

#[tokio::test]
async fn head_sends_headers_only() {
    let body = r#"{"id": 1}"#;
    let server = TestServer::start(Routes::new().route("/a/", Route::json(body)))
        .await
        .unwrap();
    let mut c = Client::connect(server.addr()).await;
    c.send(b"HEAD /a/ HTTP/1.1\r\n\r\n").await;
    let r = c.read_response(true).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), body.len());
    // The connection is still usable and no body bytes were sent before the next response.
    let r = c.get("/a/").await;
    assert_eq!(r.body, body.as_bytes());
}

#[tokio::test]
async fn keep_alive_and_pipelining_reuse_one_connection() {
    let server = TestServer::start(
        Routes::new()
            .route("/a/", Route::json("[1]"))
            .route("/b/", Route::json("[2]")),
    )
    .await
    .unwrap();
    let mut c = Client::connect(server.addr()).await;
    for _ in 0..3 {
        assert_eq!(c.get("/a/").await.body, b"[1]");
        assert_eq!(c.get("/b/").await.body, b"[2]");
    }
    // Two requests in one write, one with a body to discard.
    c.send(b"GET /a/ HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b/ HTTP/1.1\r\n\r\n")
        .await;
    assert_eq!(c.read_response(false).await.unwrap().body, b"[1]");
    assert_eq!(c.read_response(false).await.unwrap().body, b"[2]");
    // Connection: close is honoured.
    c.send(b"GET /a/ HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    let r = c.read_response(false).await.unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed_by_server().await);
    assert_eq!(server.requests("/a/"), 5);
}

#[tokio::test]
async fn status_faults_answer_the_code_and_keep_the_connection() {
    let codes = [500u16, 503, 404, 400, 401];
    let routes: Routes = codes
        .iter()
        .map(|c| (format!("/s/{c}/"), pikachu().always(Fault::Status(*c))))
        .collect();
    let server = TestServer::start(routes).await.unwrap();
    let mut c = Client::connect(server.addr()).await;
    for code in codes {
        let r = c.get(&format!("/s/{code}/")).await;
        assert_eq!(r.status, code);
        assert!(r.json().is_err(), "fault body is plain text");
        assert_eq!(
            server.faults(&format!("/s/{code}/")),
            BTreeMap::from([(Fault::Status(code), 1)])
        );
    }
}

#[tokio::test]
async fn rate_limit_sends_retry_after() {
    let server = TestServer::start(Routes::new().route(
        "/p/",
        pikachu().fail_first(
            2,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        ),
    ))
    .await
    .unwrap();
    let mut c = Client::connect(server.addr()).await;
    for _ in 0..2 {
        let r = c.get("/p/").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("7"));
    }
    let r = c.get("/p/").await;
    assert_eq!(r.status, 200);
    assert!(r.json().is_ok());
    assert_eq!(server.requests("/p/"), 3);
    assert_eq!(server.stats().faulted(), 2);
}

#[tokio::test]
async fn stall_delays_the_normal_response() {
    let stall = Duration::from_millis(400);
    let server =
        TestServer::start(Routes::new().route("/p/", pikachu().fail_first(2, Fault::Stall(stall))))
            .await
            .unwrap();

    // An impatient client times out and hangs up; the server copes.
    let mut impatient = Client::connect(server.addr()).await;
    impatient.send(b"GET /p/ HTTP/1.1\r\n\r\n").await;
    let waited =
        tokio::time::timeout(Duration::from_millis(100), impatient.read_response(false)).await;
    assert!(waited.is_err(), "the stalled response came early");
    drop(impatient);

    // A patient client gets the full document after the stall.
    let start = Instant::now();
    let r = get(&server, "/p/").await;
    assert!(start.elapsed() >= stall);
    assert_eq!(r.status, 200);
    assert!(r.json().is_ok());
    assert_eq!(
        server.faults("/p/"),
        BTreeMap::from([(Fault::Stall(stall), 2)])
    );
    // Then no more stalls.
    assert_eq!(get(&server, "/p/").await.status, 200);
}

#[tokio::test]
async fn close_mid_body_announces_more_than_it_sends() {
    let server = TestServer::start(
        Routes::new()
            .route("/p/", pikachu().fail_first(1, Fault::CloseMidBody))
            .route("/empty/", Route::json("").always(Fault::CloseMidBody)),
    )
    .await
    .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let r = c.get("/p/").await;
    assert_eq!(r.status, 200);
    assert!(r.short_body);
    assert!(r.body.len() < r.content_length());
    assert!(!r.body.is_empty());
    assert!(c.closed_by_server().await);

    // Even an empty body is announced as longer than what is sent.
    let r = get(&server, "/empty/").await;
    assert!(r.short_body);
    assert_eq!(r.content_length(), 1);

    assert!(get(&server, "/p/").await.json().is_ok());
}

#[tokio::test]
async fn truncated_json_has_correct_framing_and_broken_json() {
    let server = TestServer::start(Routes::new().route(
        "/p/",
        Route::json("{\"id\": 25}\n").always(Fault::TruncatedJson),
    ))
    .await
    .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let r = c.get("/p/").await;
    assert_eq!(r.status, 200);
    assert!(!r.short_body);
    assert_eq!(r.body.len(), r.content_length());
    assert_eq!(r.body, b"{\"id\"");
    assert!(r.json().unwrap_err().is_eof());
    // The connection stays usable.
    assert_eq!(c.get("/p/").await.status, 200);
}

#[tokio::test]
async fn not_json_serves_an_html_page() {
    let server = TestServer::start(Routes::new().route("/p/", pikachu().always(Fault::NotJson)))
        .await
        .unwrap();
    let r = get(&server, "/p/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().starts_with("<!DOCTYPE html>"));
    assert!(r.json().is_err());
}

#[tokio::test]
async fn huge_body_is_exact_valid_json_and_can_be_abandoned() {
    let bytes = 3 * 1024 * 1024 + 17;
    let server =
        TestServer::start(Routes::new().route("/p/", pikachu().always(Fault::HugeBody { bytes })))
            .await
            .unwrap();
    let mut c = Client::connect(server.addr()).await;
    let r = c.get("/p/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length() as u64, bytes);
    assert_eq!(r.body.len() as u64, bytes);
    let doc = r.json().unwrap();
    assert_eq!(doc["padding"].as_str().unwrap().len() as u64, bytes - 14);
    // Keep-alive survives a fully read huge body.
    assert_eq!(c.get("/p/").await.content_length() as u64, bytes);

    // A client that stops reading after the head and hangs up does not hurt the server.
    let mut quitter = Client::connect(server.addr()).await;
    quitter.send(b"GET /p/ HTTP/1.1\r\n\r\n").await;
    quitter.read_response(true).await.unwrap();
    drop(quitter);
    let tiny = TestServer::start(
        Routes::new().route("/t/", Route::json("").always(Fault::HugeBody { bytes: 5 })),
    )
    .await
    .unwrap();
    assert_eq!(get(&tiny, "/t/").await.body, b"xxxxx");
    assert_eq!(server.requests("/p/"), 3);
}

#[tokio::test]
async fn fault_sequences_then_success() {
    let server = TestServer::start(Routes::new().route(
        "/p/",
        pikachu().fault_sequence([Some(Fault::Status(500)), None, Some(Fault::TruncatedJson)]),
    ))
    .await
    .unwrap();
    let mut c = Client::connect(server.addr()).await;
    assert_eq!(c.get("/p/").await.status, 500);
    assert!(c.get("/p/").await.json().is_ok());
    assert!(c.get("/p/").await.json().is_err());
    for _ in 0..3 {
        assert!(c.get("/p/").await.json().is_ok());
    }
    let p = server.stats().path("/p/").cloned().unwrap();
    assert_eq!((p.requests, p.faulted(), p.clean()), (6, 2, 4));
}

#[tokio::test]
async fn malformed_requests_get_an_error_and_never_kill_the_server() {
    let server = TestServer::start(Routes::new().route("/a/", Route::json("{}")))
        .await
        .unwrap();
    let cases: [(&[u8], u16); 7] = [
        (b"\x00\x01\x02garbage\r\n\r\n", 400),
        (b"GET /a/ HTTP/1.1\r\nbroken header\r\n\r\n", 400),
        (b"GET /a/ HTTP/2.0\r\n\r\n", 505),
        (
            b"POST /a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (
            b"GET /a/ HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            413,
        ),
        (
            b"GET /a/ HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
            400,
        ),
        (b"GET /\xc3\x28 HTTP/1.1\r\n\r\n", 400),
    ];
    for (raw, status) in cases {
        let mut c = Client::connect(server.addr()).await;
        c.send(raw).await;
        let r = c.read_response(false).await.unwrap();
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed_by_server().await);
    }

    // Other methods: 405 with Allow, connection kept.
    let mut c = Client::connect(server.addr()).await;
    c.send(b"DELETE /a/ HTTP/1.1\r\n\r\n").await;
    let r = c.read_response(false).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(c.get("/a/").await.status, 200);

    // An endless head is cut off at 16 KiB with 431.
    let mut c = Client::connect(server.addr()).await;
    let mut raw = b"GET /a/ HTTP/1.1\r\n".to_vec();
    while raw.len() < 40 * 1024 {
        raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let _ = c.stream.write_all(&raw).await; // the server may close before reading it all
    let r = c.read_response(false).await.unwrap();
    assert_eq!(r.status, 431);

    // A client that disconnects mid-head or mid-body.
    let mut c = Client::connect(server.addr()).await;
    c.send(b"GET /a/ HTT").await;
    drop(c);
    let mut c = Client::connect(server.addr()).await;
    c.send(b"GET /a/ HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    drop(c);

    // Still serving; only well-formed GET/HEAD requests were counted.
    assert_eq!(get(&server, "/a/").await.status, 200);
    assert_eq!(server.requests("/a/"), 2);
}

/// What a client saw, classified the way a fetcher would.
fn classify(r: Option<Response>, elapsed: Duration, stall: Duration) -> &'static str {
    let Some(r) = r else {
        return "no response";
    };
    if r.short_body {
        return "close_mid_body";
    }
    match r.status {
        429 => "rate_limited",
        500 | 503 => "status",
        200 if r.header("content-type") == Some("text/html; charset=utf-8") => "not_json",
        200 if r.json().is_err() => "truncated_json",
        200 if r.body.len() > 100_000 => "huge_body",
        200 if elapsed >= stall => "stall",
        200 => "ok",
        _ => "unexpected",
    }
}

/// Fetches every path until it answers cleanly (at most `max + 1` tries), sequentially.
async fn drive(
    server: &TestServer,
    paths: &[String],
    stall: Duration,
) -> BTreeMap<&'static str, u64> {
    let mut seen = BTreeMap::new();
    let mut c = Client::connect(server.addr()).await;
    for path in paths {
        loop {
            let start = Instant::now();
            c.send(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
                .await;
            let r = c.read_response(false).await;
            let kind = classify(r, start.elapsed(), stall);
            *seen.entry(kind).or_insert(0) += 1;
            if kind == "close_mid_body" {
                c = Client::connect(server.addr()).await;
            }
            if kind == "ok" {
                break;
            }
        }
    }
    seen
}

#[tokio::test]
async fn seeded_chaos_is_reproducible_and_every_fault_is_counted() {
    let stall = Duration::from_millis(200);
    let paths: Vec<String> = (1..=300).map(|i| format!("/pokemon/{i}/")).collect();
    let routes = || -> Routes {
        paths
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Route::json(format!(
                        r#"{{"path": "{p}", "pad": "{}"}}"#,
                        "p".repeat(200)
                    )),
                )
            })
            .collect::<Routes>()
            .chaos(Chaos::mixed(2026, 0.2, stall, 200_000).max_faults_per_path(3))
    };

    let a = TestServer::start(routes()).await.unwrap();
    let seen = drive(&a, &paths, stall).await;
    let stats = a.stats();

    // Every response the client saw is accounted for by the server, kind by kind.
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (fault, n) in stats.faults() {
        *by_kind.entry(fault.kind()).or_insert(0) += n;
    }
    let stall_seen = seen.get("stall").copied().unwrap_or(0);
    for (kind, n) in &seen {
        match *kind {
            "ok" => assert_eq!(*n, paths.len() as u64),
            // A stalled request is also answered in full, so it is never "ok" for the client;
            // the loop retries it once more.
            k => assert_eq!(by_kind.get(k).copied().unwrap_or(0), *n, "{k}"),
        }
    }
    assert_eq!(
        by_kind.values().sum::<u64>(),
        seen.values().sum::<u64>() - seen["ok"]
    );
    assert_eq!(stats.requests(), seen.values().sum::<u64>());
    assert_eq!(stats.requests(), stats.faulted() + paths.len() as u64);
    // About 20% of first attempts failed and every kind of fault occurred.
    let faulted_paths = stats.paths.values().filter(|p| p.faulted() > 0).count();
    assert!(
        (30..=100).contains(&faulted_paths),
        "{faulted_paths} of 300 paths faulted"
    );
    assert_eq!(by_kind.len(), 7, "{by_kind:?}");
    assert!(stall_seen > 0);
    assert!(stats.paths.values().all(|p| p.faulted() <= 3));

    // The same seed gives the same faults for the same paths on a fresh server.
    let b = TestServer::start(routes()).await.unwrap();
    drive(&b, &paths, stall).await;
    assert_eq!(b.stats(), stats);
}

#[tokio::test]
async fn concurrent_clients_are_all_counted() {
    let routes: Routes = (0..50)
        .map(|i| (format!("/k/{i}/"), Route::json(format!("[{i}]"))))
        .collect();
    let server = TestServer::start(routes).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let addr = server.addr();
        tasks.spawn(async move {
            let mut c = Client::connect(addr).await;
            for i in 0..50 {
                let r = c.get(&format!("/k/{}/", (i + t) % 50)).await;
                assert_eq!(r.body, format!("[{}]", (i + t) % 50).as_bytes());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let stats = server.stats();
    assert_eq!(stats.requests(), 400);
    assert!(stats.paths.values().all(|p| p.requests == 8));
}

#[tokio::test]
async fn shutdown_and_drop_release_the_port_and_close_connections() {
    let server = TestServer::start(Routes::new().route("/a/", Route::json("{}")))
        .await
        .unwrap();
    let addr = server.addr();
    let mut idle = Client::connect(addr).await;
    assert_eq!(idle.get("/a/").await.status, 200);
    server.shutdown().await;
    assert!(
        idle.closed_by_server().await,
        "kept-alive connection outlived shutdown"
    );
    assert!(TcpStream::connect(addr).await.is_err());

    let server = TestServer::start(Routes::new()).await.unwrap();
    let addr = server.addr();
    drop(server);
    // Dropping aborts the accept task; the listener closes as soon as the runtime drops it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "port still open after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn server_on_its_own_thread_serves_blocking_clients() {
    use std::io::{Read, Write};
    let server = TestServer::start_on_thread(
        Routes::new().route("/a/", Route::json(r#"{"self": "{base}/a/"}"#)),
    )
    .unwrap();
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET /a/ HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.ends_with(&format!(r#"{{"self": "{}/a/"}}"#, server.base_url())));
    let addr = server.addr();
    drop(server);
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[tokio::test]
async fn generated_routes_serve_many_paths_without_storing_them() {
    let routes = Routes::new()
        .route("/pokemon/7/", Route::json(r#"{"fixed": true}"#))
        .generate("/pokemon/", |rest| {
            let id: u32 = rest.trim_end_matches('/').parse().ok()?;
            (1..=1_000_000).contains(&id).then(|| {
                let route = Route::json(format!(
                    r#"{{"id": {id}, "self": "{{base}}/pokemon/{id}/"}}"#
                ));
                if id == 13 {
                    route.fail_first(1, Fault::Status(503))
                } else {
                    route
                }
            })
        })
        .generate("/pokemon/special/", |_| {
            Some(Route::text(200, "longest prefix wins"))
        });
    let server = TestServer::start(routes).await.unwrap();
    let mut c = Client::connect(server.addr()).await;

    let r = c.get("/pokemon/999999/").await;
    assert_eq!(
        r.json().unwrap()["self"],
        format!("{}/pokemon/999999/", server.base_url())
    );
    // A fixed route beats the generator; the generator's None is a 404.
    assert_eq!(c.get("/pokemon/7/").await.json().unwrap()["fixed"], true);
    assert_eq!(c.get("/pokemon/0/").await.status, 404);
    assert_eq!(c.get("/pokemon/pikachu/").await.status, 404);
    assert_eq!(
        c.get("/pokemon/special/x").await.text(),
        "longest prefix wins"
    );
    // The generated route's own fault plan is indexed by requests to that path.
    assert_eq!(c.get("/pokemon/13/").await.status, 503);
    assert_eq!(c.get("/pokemon/13/").await.status, 200);
    assert_eq!(server.requests("/pokemon/13/"), 2);
    assert_eq!(
        server.faults("/pokemon/13/"),
        BTreeMap::from([(Fault::Status(503), 1)])
    );
}
