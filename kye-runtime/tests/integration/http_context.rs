//! `Context`'s HTTP helpers against a real server on 127.0.0.1: status → error class,
//! Retry-After, timeouts, cut and oversized bodies, authentication, secret redaction.

use crate::common;

use std::time::{Duration, Instant};

use common::echo::echo_server;
use kye_runtime::testing::{Fault, Route, Routes, TestServer};
use kye_runtime::Config;
use kye_runtime::Secrets;
use kye_runtime::{Context, ErrorClass};

const PIKACHU: &str = r#"{"id": 25, "name": "pikachu", "height": 4, "weight": 60}"#;

fn ctx_with(toml: &str) -> Context {
    let config = Config::from_toml_str(toml, None).unwrap();
    Context::builder().config(config).build().unwrap()
}

async fn server() -> TestServer {
    let routes = Routes::new()
        .route("/pokemon/25/", Route::json(PIKACHU))
        .route(
            "/flaky/",
            Route::json(PIKACHU).fail_first(1, Fault::Status(500)),
        )
        .route(
            "/limited/",
            Route::json(PIKACHU).fail_first(
                1,
                Fault::RateLimited {
                    retry_after_secs: 1,
                },
            ),
        )
        .route(
            "/stall/",
            Route::json(PIKACHU).always(Fault::Stall(Duration::from_secs(5))),
        )
        .route(
            "/truncated/",
            Route::json(PIKACHU).always(Fault::TruncatedJson),
        )
        .route("/cut/", Route::json(PIKACHU).always(Fault::CloseMidBody))
        .route("/html/", Route::json(PIKACHU).always(Fault::NotJson))
        .route(
            "/huge/",
            Route::json(PIKACHU).always(Fault::HugeBody { bytes: 3 << 20 }),
        )
        .route(
            "/denied/",
            Route::text(401, r#"{"error": "invalid token"}"#),
        )
        .route("/bad/", Route::text(400, "missing parameter: limit"))
        .route("/forbidden/", Route::text(403, "forbidden"));
    TestServer::start(routes).await.unwrap()
}

#[tokio::test]
async fn success_parses_json_typed_and_untyped() {
    let s = server().await;
    let ctx = Context::new();
    let v = ctx.get_json_value(&s.url("/pokemon/25/")).await.unwrap();
    assert_eq!(v["name"], "pikachu");
    #[derive(serde::Deserialize)]
    struct P {
        id: u32,
        name: String,
    }
    let p: P = ctx.get_json(&s.url("/pokemon/25/")).await.unwrap();
    assert_eq!((p.id, p.name.as_str()), (25, "pikachu"));
    assert_eq!(ctx.get_text(&s.url("/pokemon/25/")).await.unwrap(), PIKACHU);
}

#[tokio::test]
async fn status_codes_map_to_error_classes_with_url_and_reason() {
    let s = server().await;
    let ctx = Context::new();

    let e = ctx
        .get_json_value(&s.url("/pokemon/99999/"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Missing);
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.url(), Some(s.url("/pokemon/99999/").as_str()));
    assert!(e.to_string().contains("/pokemon/99999/"), "{e}");

    let e = ctx.get_json_value(&s.url("/denied/")).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.to_string().contains("HTTP 401 Unauthorized"), "{e}");
    assert!(e.to_string().contains("invalid token"), "{e}");

    let e = ctx.get_json_value(&s.url("/bad/")).await.unwrap_err();
    assert_eq!((e.class(), e.status()), (ErrorClass::Permanent, Some(400)));
    assert!(e.to_string().contains("missing parameter: limit"), "{e}");
    let e = ctx.get_json_value(&s.url("/forbidden/")).await.unwrap_err();
    assert_eq!((e.class(), e.status()), (ErrorClass::Permanent, Some(403)));

    // 500 first: retryable; the same URL then succeeds.
    let e = ctx.get_json_value(&s.url("/flaky/")).await.unwrap_err();
    assert_eq!((e.class(), e.status()), (ErrorClass::Retryable, Some(500)));
    assert!(ctx.get_json_value(&s.url("/flaky/")).await.is_ok());
}

#[tokio::test]
async fn retry_after_is_parsed_and_pauses_the_host() {
    let s = server().await;
    let ctx = Context::new();
    let e = ctx.get_json_value(&s.url("/limited/")).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(e.status(), Some(429));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    // Any request to the same host now waits out the pause.
    let start = Instant::now();
    ctx.get_json_value(&s.url("/pokemon/25/")).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn stalls_time_out_as_retryable() {
    let s = server().await;
    let ctx = ctx_with("[run]\ntimeout = \"300ms\"\n");
    let start = Instant::now();
    let e = ctx.get_json_value(&s.url("/stall/")).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(e.to_string().contains("/stall/"), "{e}");
}

#[tokio::test]
async fn cut_truncated_and_non_json_bodies_are_retryable() {
    let s = server().await;
    let ctx = Context::new();
    for path in ["/truncated/", "/cut/", "/html/"] {
        let e = ctx.get_json_value(&s.url(path)).await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable, "{path}: {e}");
        assert!(e.to_string().contains(path), "{e}");
    }
    let e = ctx.get_json_value(&s.url("/truncated/")).await.unwrap_err();
    assert!(e.to_string().contains("truncated JSON"), "{e}");
    let e = ctx.get_json_value(&s.url("/cut/")).await.unwrap_err();
    assert!(e.to_string().contains("cut short"), "{e}");
}

#[tokio::test]
async fn oversized_bodies_fail_permanently_naming_the_limit() {
    let s = server().await;
    let ctx = ctx_with("[run]\nmax_body_size = \"1MiB\"\n");
    let e = ctx.get_json_value(&s.url("/huge/")).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(e.to_string().contains("1048576 bytes"), "{e}");
    assert!(e.to_string().contains("run.max_body_size"), "{e}");
    // Under the default limit (32 MiB) the same body is fine.
    let v = Context::new()
        .get_json_value(&s.url("/huge/"))
        .await
        .unwrap();
    assert!(v["padding"].as_str().unwrap().len() > 3_000_000);
}

fn auth_ctx(base: &str) -> Context {
    let port = base.rsplit(':').next().unwrap();
    let toml = format!(
        r#"
        [hosts."127.0.0.1:{port}".auth]
        type = "bearer"
        secret = "ECHO_TOKEN"

        [fetchers."keyed".auth]
        type = "query"
        name = "appid"
        secret = "ECHO_APPID"

        [fetchers."header".auth]
        type = "header"
        name = "X-Api-Key"
        secret = "ECHO_TOKEN"

        [fetchers."basic".auth]
        type = "basic"
        username = "reporter"
        secret = "ECHO_PASSWORD"
        "#
    );
    let config = Config::from_toml_str(&toml, None).unwrap();
    let secrets = Secrets::load(
        [
            ("ECHO_TOKEN".to_string(), "tok-4f9a2b7c1d".to_string()),
            ("ECHO_APPID".to_string(), "appid-8e3d5c9a0f".to_string()),
            ("ECHO_PASSWORD".to_string(), "pw-77aa21c0de".to_string()),
        ],
        None,
    )
    .unwrap();
    Context::builder()
        .config(config)
        .secrets(secrets)
        .build()
        .unwrap()
}

#[tokio::test]
async fn auth_is_applied_per_host_and_per_fetcher() {
    let base = echo_server().await;
    let ctx = auth_ctx(&base);

    let v = ctx.get_json_value(&format!("{base}/x")).await.unwrap();
    let head = v["head"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        head.contains("authorization: bearer tok-4f9a2b7c1d"),
        "{head}"
    );

    let v = ctx
        .for_fetcher("keyed")
        .get_json_value(&format!("{base}/x?id=1"))
        .await
        .unwrap();
    let head = v["head"].as_str().unwrap();
    assert!(
        head.starts_with("GET /x?id=1&appid=appid-8e3d5c9a0f "),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );

    let v = ctx
        .for_fetcher("header")
        .get_json_value(&format!("{base}/x"))
        .await
        .unwrap();
    let head = v["head"].as_str().unwrap().to_ascii_lowercase();
    assert!(head.contains("x-api-key: tok-4f9a2b7c1d"), "{head}");

    let v = ctx
        .for_fetcher("basic")
        .get_json_value(&format!("{base}/x"))
        .await
        .unwrap();
    let head = v["head"].as_str().unwrap().to_ascii_lowercase();
    // base64("reporter:pw-77aa21c0de")
    assert!(
        head.contains("authorization: basic cmvwb3j0zxi6chctnzdhytixyzbkzq=="),
        "{head}"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug_output() {
    let base = echo_server().await;
    let ctx = auth_ctx(&base);
    let secret_values = ["tok-4f9a2b7c1d", "appid-8e3d5c9a0f", "pw-77aa21c0de"];

    // The query-parameter key is in the request URL: the error must show it redacted.
    let e = ctx
        .for_fetcher("keyed")
        .get_json_value(&format!("{base}/status/401?id=1"))
        .await
        .unwrap_err();
    let shown = format!("{e} | {e:?} | {:?}", e.url());
    assert!(shown.contains("appid=[redacted]"), "{shown}");
    // The body echoes the request head (with the token): the snippet must be redacted too.
    let e2 = ctx
        .get_json_value(&format!("{base}/status/403"))
        .await
        .unwrap_err();
    let shown2 = format!("{e2} | {e2:?}");
    let debug_ctx = format!("{ctx:?}");
    let secret = ctx.secret("ECHO_TOKEN").unwrap();
    let shown_secret = format!("{secret} {secret:?}");
    for s in secret_values {
        assert!(!shown.contains(s), "{shown}");
        assert!(!shown2.contains(s), "{shown2}");
        assert!(!debug_ctx.contains(s), "{debug_ctx}");
        assert!(!shown_secret.contains(s), "{shown_secret}");
    }
    assert_eq!(secret.expose(), "tok-4f9a2b7c1d");

    // A missing secret names the secret, not a value.
    let e = ctx.secret("NOT_CONFIGURED").unwrap_err();
    assert!(e.to_string().contains("NOT_CONFIGURED"), "{e}");
}

#[tokio::test]
async fn configuration_is_readable_by_fetchers_with_env_overrides() {
    let mut config = Config::from_toml_str(
        "[pokeapi]\nbase_url = \"https://pokeapi.co/api/v2\"\npage_size = 20\n",
        None,
    )
    .unwrap();
    config.apply_env([(
        "KYE_POKEAPI__BASE_URL".to_string(),
        "http://127.0.0.1:1/api".to_string(),
    )]);
    let ctx = Context::builder().config(config).build().unwrap();
    assert_eq!(
        ctx.config_str("pokeapi.base_url").as_deref(),
        Some("http://127.0.0.1:1/api")
    );
    assert_eq!(ctx.config_as::<u32>("pokeapi.page_size").unwrap(), Some(20));
    assert_eq!(ctx.config_or("pokeapi.missing", "dflt"), "dflt");
    // Connection refused on a closed port: retryable, URL attached.
    let e = ctx
        .get_json_value("http://127.0.0.1:1/api/pokemon/1/")
        .await
        .unwrap_err();
    assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
    assert!(e.to_string().contains("127.0.0.1:1/api/pokemon/1/"), "{e}");
}

/// A context authenticating every request to `host` with `auth` (secret `S` = `value`).
fn ctx_authenticating(host: &str, auth: &str, value: &str) -> Context {
    let config =
        Config::from_toml_str(&format!("[hosts.\"{host}\".auth]\n{auth}\n"), None).unwrap();
    let secrets = Secrets::load([("S".to_string(), value.to_string())], None).unwrap();
    Context::builder()
        .config(config)
        .secrets(secrets)
        .build()
        .unwrap()
}

#[tokio::test]
async fn no_credential_follows_a_redirect_to_another_origin() {
    use common::recorder::recorder;
    let other = recorder("unused").await;
    let landing = format!("{}/landing?x=1", other.base);
    for (auth, secret) in [
        (
            "type = \"header\"\nname = \"X-Api-Key\"\nsecret = \"S\"",
            "hdr-secret-4c1d9e",
        ),
        (
            "type = \"query\"\nname = \"apikey\"\nsecret = \"S\"",
            "qry-secret-7a2b3f",
        ),
        ("type = \"bearer\"\nsecret = \"S\"", "brr-secret-0e9d8c"),
        (
            "type = \"basic\"\nusername = \"u\"\nsecret = \"S\"",
            "bsc-secret-6f5e4d",
        ),
    ] {
        let source = recorder(&landing).await;
        let host = source.base.trim_start_matches("http://").to_string();
        let ctx = ctx_authenticating(&host, auth, secret);
        let e = ctx
            .get_json_value(&format!("{}/hop?id=1", source.base))
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
        let shown = e.to_string();
        assert!(shown.contains("redirected to another origin"), "{shown}");
        assert!(shown.contains(&other.base), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        // The source was asked (with its credential), the other origin never.
        let asked = source.heads();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(
            asked[0].contains(secret)
                || asked[0]
                    .to_ascii_lowercase()
                    .contains("authorization: basic"),
            "{asked:?}"
        );
    }
    let reached = other.heads();
    assert!(
        reached.is_empty(),
        "the other origin was reached: {reached:?}"
    );
}

#[tokio::test]
async fn a_same_origin_redirect_keeps_its_credentials_and_sends_no_referer() {
    use common::recorder::recorder;
    let source = recorder("{self}/landing").await;
    let host = source.base.trim_start_matches("http://").to_string();
    let ctx = ctx_authenticating(
        &host,
        "type = \"header\"\nname = \"X-Api-Key\"\nsecret = \"S\"",
        "same-secret-2d3c4b",
    );
    let v = ctx
        .get_json_value(&format!("{}/hop?id=1", source.base))
        .await
        .unwrap();
    let head = v["head"].as_str().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /landing "), "{head}");
    assert!(head.contains("x-api-key: same-secret-2d3c4b"), "{head}");
    assert!(!head.contains("referer"), "{head}");
    assert!(!head.contains("cookie"), "{head}");
    assert_eq!(source.heads().len(), 2);
}

#[tokio::test]
async fn the_runtimes_own_context_retries_as_a_fetcher_call_is_retried() {
    use kye_runtime::{Registry, Runtime};
    let flaky = || {
        Route::json(PIKACHU).fault_sequence([
            Some(Fault::Status(503)),
            Some(Fault::RateLimited {
                retry_after_secs: 0,
            }),
        ])
    };
    let routes = Routes::new()
        .route("/outside/", flaky())
        .route("/plain/", flaky())
        .route("/gone/", Route::text(404, "no such thing"));
    let server = TestServer::start(routes).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        "[run]\nmax_attempts = 3\nbackoff_base = \"5ms\"\nbackoff_max = \"10ms\"\n",
        None,
    )
    .unwrap();
    let rt = Runtime::builder()
        .registry(Registry::from_parts([], []).unwrap())
        .config(config)
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();

    // Outside any fetcher: 503, then 429, then the document.
    let v: serde_json::Value = rt
        .context()
        .get_json(&server.url("/outside/"))
        .await
        .unwrap();
    assert_eq!(v["name"], "pikachu");
    assert_eq!(server.requests("/outside/"), 3);
    // Not retried: a 404 is an answer, not a failure.
    let err = rt
        .context()
        .get_json_value(&server.url("/gone/"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Missing);
    assert_eq!(server.requests("/gone/"), 1);

    // A fetcher's context does not retry by itself (the executor retries the whole call).
    let err = rt
        .context()
        .for_fetcher("f")
        .get_json_value(&server.url("/plain/"))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert_eq!(server.requests("/plain/"), 1);
}

// ---------------------------------------------------------------------------------------------
// Paging through list endpoints (`Context::pages`), each kind against a loopback API of 23
// items that caps its page size at 5.

mod pages {
    use super::*;
    use kye_runtime::http::{PageEnd, Paginator};
    use serde_json::{json, Value};

    const ITEMS: u64 = 23;
    const CAP: u64 = 5;

    fn query(q: &str, name: &str) -> Option<u64> {
        kye_runtime::testing::query_param(q, name)?.parse().ok()
    }

    /// Items `offset+1 ..= offset+limit` (at most CAP), as JSON.
    fn items(offset: u64, limit: u64) -> Vec<Value> {
        (offset + 1..=(offset + limit.min(CAP)).min(ITEMS))
            .map(|id| json!({ "id": id }))
            .collect()
    }

    fn api() -> Routes {
        Routes::new()
            // ?offset=&limit=  →  {"data": [...]}
            .generate_with_query("/offset", |_, q| {
                let body = json!({ "data": items(query(q, "offset")?, query(q, "limit")?) });
                Some(Route::json(body.to_string()))
            })
            // ?page=N (from 1) →  [...]
            .generate_with_query("/numbered", |_, q| {
                let page = query(q, "page")?;
                Some(Route::json(Value::Array(items((page - 1) * CAP, CAP)).to_string()))
            })
            // ?cursor=K        →  {"items": [...], "meta": {"next": "K+5" | null}}
            .generate_with_query("/cursor", |_, q| {
                // Opaque cursors: "k5" for the items after the fifth.
                let from = match q.strip_prefix("cursor=k") {
                    Some(n) => n.parse().ok()?,
                    None => 0,
                };
                let next = (from + CAP < ITEMS).then(|| format!("k{}", from + CAP));
                let body = json!({ "items": items(from, CAP), "meta": { "next": next } });
                Some(Route::json(body.to_string()))
            })
            // ?after=N, the next N in the X-Next-Cursor header
            .generate_with_query("/hcursor", |_, q| {
                let from = query(q, "after").unwrap_or(0);
                let route = Route::json(Value::Array(items(from, CAP)).to_string());
                Some(if from + CAP < ITEMS {
                    route.header("X-Next-Cursor", (from + CAP).to_string())
                } else {
                    route
                })
            })
            // PokeAPI's shape: {"count", "next", "previous", "results"}
            .generate_with_query("/api/v2/pokemon/", |_, q| {
                let offset = query(q, "offset").unwrap_or(0);
                let limit = query(q, "limit").unwrap_or(20).min(CAP);
                let next = (offset + limit < ITEMS).then(|| {
                    format!("{{base}}/api/v2/pokemon/?offset={}&limit={limit}", offset + limit)
                });
                let body = json!({
                    "count": ITEMS, "next": next, "previous": null,
                    "results": items(offset, limit),
                });
                Some(Route::json(body.to_string()))
            })
            // Link: <...?page=N+1>; rel="next"
            .generate_with_query("/linked", |_, q| {
                let page = query(q, "page").unwrap_or(1);
                let route = Route::json(Value::Array(items((page - 1) * CAP, CAP)).to_string());
                Some(if page * CAP < ITEMS {
                    route.header(
                        "Link",
                        format!(
                            r#"<{{base}}/linked?page=1>; rel="first", <{{base}}/linked?page={}>; rel="next""#,
                            page + 1
                        ),
                    )
                } else {
                    route
                })
            })
            // {"has_more": bool, "after": id, "rows": [...]}
            .generate_with_query("/more", |_, q| {
                let from = query(q, "after").unwrap_or(0);
                let body = json!({
                    "rows": items(from, CAP), "after": from + CAP, "has_more": from + CAP < ITEMS,
                });
                Some(Route::json(body.to_string()))
            })
            // Always names itself as the next page.
            .route(
                "/loop",
                Route::json(r#"{"next": "/loop?again=1", "r": [{"id": 1}]}"#),
            )
    }

    async fn walk(
        ctx: &Context,
        url: &str,
        p: &Paginator,
    ) -> kye_runtime::Result<(Vec<u64>, Option<PageEnd>)> {
        let mut pages = ctx.pages(url, p)?;
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await? {
            ids.extend(page.items.iter().map(|i| i["id"].as_u64().unwrap()));
        }
        Ok((ids, pages.ended()))
    }

    fn every_item() -> Vec<u64> {
        (1..=ITEMS).collect()
    }

    #[tokio::test]
    async fn every_kind_of_paging_yields_every_item_once() {
        let server = TestServer::start(api()).await.unwrap();
        let ctx = Context::new();
        let cases = [
            // Asks for 10 a page; the server gives 5: the offset moves by what came.
            (
                "/offset",
                Paginator::offset("offset", "limit", 10).items("data"),
                PageEnd::Empty,
                6,
            ),
            (
                "/numbered",
                Paginator::page_number("page"),
                PageEnd::Empty,
                6,
            ),
            (
                "/cursor",
                Paginator::body_cursor("meta.next", "cursor").items("/items"),
                PageEnd::NoNext,
                5,
            ),
            (
                "/hcursor",
                Paginator::header_cursor("x-next-cursor", "after"),
                PageEnd::NoNext,
                5,
            ),
            (
                "/api/v2/pokemon/?limit=5",
                Paginator::next_url("next").items("results").total("count"),
                PageEnd::Total,
                5,
            ),
            ("/linked", Paginator::link_header(), PageEnd::NoNext, 5),
            (
                "/more",
                Paginator::body_cursor("after", "after")
                    .items("rows")
                    .has_more("has_more"),
                PageEnd::NoMore,
                5,
            ),
        ];
        for (path, paginator, end, requests) in cases {
            server.reset_stats();
            let (ids, ended) = walk(&ctx, &server.url(path), &paginator)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(ids, every_item(), "{path}");
            assert_eq!(ended, Some(end), "{path}");
            assert_eq!(server.stats().requests(), requests, "{path}");
        }
    }

    #[tokio::test]
    async fn a_failing_page_is_retried_and_one_that_keeps_failing_names_itself() {
        let routes = api()
            // The third request (page 3) fails once with 503, then answers.
            .generate_with_query("/flaky", |_, q| {
                let page = query(q, "page")?;
                let route = Route::json(Value::Array(items((page - 1) * CAP, CAP)).to_string());
                Some(route.fault_sequence([None, None, Some(Fault::Status(503))]))
            })
            // Page 2 always fails.
            .generate_with_query("/broken", |_, q| {
                let page = query(q, "page")?;
                let route = Route::json(Value::Array(items((page - 1) * CAP, CAP)).to_string());
                Some(if page == 2 {
                    route.always(Fault::Status(500))
                } else {
                    route
                })
            });
        let server = TestServer::start(routes).await.unwrap();
        let ctx =
            ctx_with("[run]\nmax_attempts = 3\nbackoff_base = \"5ms\"\nbackoff_max = \"10ms\"\n");
        let paging = Paginator::page_number("page");

        let mut pages = ctx.pages(&server.url("/flaky"), &paging).unwrap();
        let mut ids = Vec::new();
        while let Some(page) = pages.next().await.unwrap() {
            ids.extend(page.items.iter().map(|i| i["id"].as_u64().unwrap()));
        }
        assert_eq!(ids, every_item());
        assert_eq!(pages.retries(), 1);
        assert_eq!(server.requests("/flaky"), 7);

        let mut pages = ctx.pages(&server.url("/broken"), &paging).unwrap();
        let first = pages.next().await.unwrap().unwrap();
        assert_eq!(first.items.len() as u64, CAP);
        let err = pages.next().await.unwrap_err();
        let text = format!("{err}");
        assert!(text.contains("page 2 of the list"), "{text}");
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert_eq!(err.class(), ErrorClass::Retryable);
        // The walk is over: nothing more, and no further request.
        assert!(pages.next().await.unwrap().is_none());
        assert_eq!(server.requests("/broken"), 4);
    }

    #[tokio::test]
    async fn paging_that_loops_is_an_error_after_one_round() {
        let server = TestServer::start(api()).await.unwrap();
        let ctx = Context::new();
        let paging = Paginator::next_url("next").items("r");
        let err = walk(&ctx, &server.url("/loop?again=1"), &paging)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("loops"), "{err}");
        assert_eq!(server.requests("/loop"), 1);
    }
}
