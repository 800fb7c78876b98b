//! The catalog's pages (issue 16) over HTTP, without a browser: sign-in and its cookie, the
//! security headers, role filtering (a model outside the role answers 403), CSRF on forms,
//! a reject's failing field marked, and no token text in any page. The browser's view of the
//! same pages is `tests/example/catalog.rs` (chromium).

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;

use kye_runtime::store::{open_server_store, Timestamp};

use crate::server_api::Fixture;

struct Browser {
    base: String,
    client: reqwest::Client,
}

impl Browser {
    fn new(f: &Fixture) -> Browser {
        Browser {
            base: f.base.clone(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
                .unwrap(),
        }
    }

    async fn get(&self, cookie: Option<&str>, path: &str) -> (u16, HeaderMap, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.text().await.unwrap())
    }

    async fn post(
        &self,
        cookie: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (u16, HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        (status, headers, resp.text().await.unwrap())
    }

    /// Signs in with `token`; the `name=value` of the session cookie.
    async fn login(&self, token: &str) -> String {
        let (s, h, body) = self.post(None, "/login", &[("token", token)], &[]).await;
        assert_eq!(s, 303, "{body}");
        assert_eq!(h.get(LOCATION).unwrap(), "/");
        let cookie = h.get(SET_COOKIE).unwrap().to_str().unwrap().to_string();
        cookie.split(';').next().unwrap().to_string()
    }
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 68].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_signs_in_with_a_token_and_shows_only_what_the_role_reads() {
    let f = Fixture::start("", kye_runtime::Secrets::empty()).await;
    let b = Browser::new(&f);

    // Without a session every page sends to the login page; the login page is strict.
    for path in [
        "/",
        "/lineage",
        "/runs",
        "/rejects",
        "/drift",
        "/models/Pokemon/records",
    ] {
        let (s, h, _) = b.get(None, path).await;
        assert_eq!(
            (s, h.get(LOCATION).unwrap().to_str().unwrap()),
            (303, "/login"),
            "{path}"
        );
    }
    let (s, h, page) = b.get(None, "/login").await;
    assert_eq!(s, 200);
    let csp = h.get(CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(page.contains(r#"<label for="token">"#), "{page}");
    let (s, _, page) = b.post(None, "/login", &[("token", "kye_nope")], &[]).await;
    assert!(s == 401 && page.contains("not a kye token"), "{s} {page}");
    let (s, _, _) = b
        .post(None, "/login", &[("token", f.token("revoked"))], &[])
        .await;
    assert_eq!(s, 401, "a revoked token signs nobody in");

    // The cookie: HttpOnly, SameSite=Strict; Secure only behind an https proxy that says so.
    let (_, h, _) = b
        .post(None, "/login", &[("token", f.token("reader"))], &[])
        .await;
    let cookie = h.get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure") && !cookie.contains(f.token("reader")),
        "{cookie}"
    );
    let (_, h, _) = b
        .post(
            None,
            "/login",
            &[("token", f.token("reader"))],
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert!(h
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("; Secure"));

    // Some records, one reject (900: weight -5), through the API.
    for id in [1, 2, 3] {
        let (s, _, _) = f
            .get(
                Some("fetcher"),
                &format!("/v1/models/Pokemon/records?id={id}"),
            )
            .await;
        assert_eq!(s, 200);
    }
    let (s, _, _) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=900")
        .await;
    assert_eq!(s, 422);

    let reader = b.login(f.token("reader")).await;
    let (s, h, models) = b.get(Some(&reader), "/").await;
    assert_eq!(s, 200, "{models}");
    assert!(h.get(CONTENT_SECURITY_POLICY).is_some());
    assert!(
        models.contains(r#"<h2 id="h-Pokemon">Pokemon</h2>"#),
        "{models}"
    );
    assert!(
        models.contains("fetcher <code>"),
        "the fetcher is listed: {models}"
    );
    assert!(
        models.contains(r#"<dt>Stored records</dt><dd><a href="/models/Pokemon/records">3</a>"#),
        "{models}"
    );
    assert!(
        !models.contains("/actions/fetch"),
        "a reader gets no fetch form"
    );

    let (s, _, list) = b.get(Some(&reader), "/models/Pokemon/records").await;
    assert_eq!(s, 200);
    assert!(
        list.contains(r#"<a href="/models/Pokemon/record?id=2">2</a>"#),
        "{list}"
    );
    let (s, _, list) = b
        .get(
            Some(&reader),
            "/models/Pokemon/records?edge=name&value=mon-3",
        )
        .await;
    assert!(
        s == 200 && list.contains("record?id=3") && !list.contains("record?id=2"),
        "{list}"
    );
    let (s, _, rec) = b.get(Some(&reader), "/models/Pokemon/record?id=2").await;
    assert_eq!(s, 200, "{rec}");
    assert!(
        rec.contains("mon-2") && rec.contains("Provenance") && rec.contains("/runs#run-"),
        "{rec}"
    );

    let (s, _, rejects) = b.get(Some(&reader), "/rejects").await;
    assert_eq!(s, 200);
    assert!(
        rejects.contains(r#"<mark class="failing" data-field="weight""#),
        "{rejects}"
    );
    let (s, _, lineage) = b.get(Some(&reader), "/lineage").await;
    assert!(
        s == 200 && lineage.contains(r#"data-model="Pokemon""#),
        "{lineage}"
    );
    let (s, _, runs) = b.get(Some(&reader), "/runs").await;
    assert!(
        s == 200 && runs.contains(r#"data-poll="/runs.json""#),
        "{runs}"
    );
    let (s, _, json) = b.get(Some(&reader), "/runs.json").await;
    assert_eq!(s, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        json["runs"].as_array().is_some_and(|r| r.len() >= 4),
        "{json}"
    );
    for (path, expect) in [
        ("/assets/catalog.css", "text/css"),
        ("/assets/catalog.js", "text/javascript"),
    ] {
        let (s, h, _) = b.get(None, path).await;
        assert!(
            s == 200 && h["content-type"].to_str().unwrap().starts_with(expect),
            "{path}"
        );
    }

    // A role that reads nothing sees no model, and a model's pages answer 403.
    let nobody = b.login(f.token("nobody")).await;
    let (_, _, page) = b.get(Some(&nobody), "/").await;
    assert!(
        page.contains("Your role may read no model") && !page.contains("h-Pokemon"),
        "{page}"
    );
    for path in [
        "/models/Pokemon/record?id=2",
        "/models/Pokemon/records",
        "/models/Nope/records",
    ] {
        let (s, _, _) = b.get(Some(&nobody), path).await;
        assert_eq!(s, 403, "{path}");
    }
    for path in ["/rejects", "/runs", "/lineage", "/drift"] {
        let (_, _, page) = b.get(Some(&nobody), path).await;
        assert!(
            !page.contains("Pokemon") && !page.contains("mon-"),
            "{path}: {page}"
        );
    }
    let (_, _, json) = b.get(Some(&nobody), "/runs.json").await;
    assert_eq!(json, r#"{"runs":[]}"#);

    // Actions where the role allows them, with the session's CSRF token only.
    let ops = b.login(f.token("ops")).await;
    let (_, _, models) = b.get(Some(&ops), "/").await;
    assert!(models.contains("/actions/fetch") && models.contains("/actions/backfill"));
    let csrf = csrf_of(&models);
    let (s, _, _) = b
        .post(
            Some(&ops),
            "/actions/fetch",
            &[
                ("csrf", "kye_forged"),
                ("model", "Pokemon"),
                ("edge", "id"),
                ("value", "7"),
            ],
            &[],
        )
        .await;
    assert_eq!(s, 403, "a forged CSRF token is refused");
    let (s, h, page) = b
        .post(
            Some(&ops),
            "/actions/fetch",
            &[
                ("csrf", &csrf),
                ("model", "Pokemon"),
                ("edge", "id"),
                ("value", "7"),
            ],
            &[],
        )
        .await;
    assert_eq!(
        (s, h.get(LOCATION).map(|l| l.to_str().unwrap())),
        (303, Some("/models/Pokemon/record?id=7")),
        "{page}"
    );
    let (s, _, _) = b
        .post(
            Some(&reader),
            "/actions/fetch",
            &[
                ("csrf", &csrf),
                ("model", "Pokemon"),
                ("edge", "id"),
                ("value", "8"),
            ],
            &[],
        )
        .await;
    assert_eq!(s, 403, "another session's CSRF token is refused");
    let (s, h, _) = b
        .post(
            Some(&ops),
            "/actions/backfill",
            &[("csrf", &csrf), ("request", "Pokemon.id in 10..=12")],
            &[],
        )
        .await;
    assert_eq!(
        (s, h.get(LOCATION).map(|l| l.to_str().unwrap())),
        (303, Some("/runs"))
    );

    // No token text in any page.
    for path in [
        "/",
        "/runs",
        "/rejects",
        "/drift",
        "/lineage",
        "/models/Pokemon/records",
    ] {
        let (_, _, page) = b.get(Some(&ops), path).await;
        for t in f.tokens.values() {
            assert!(!page.contains(t.as_str()), "{path} shows a token");
        }
    }

    // Page views are audit rows with the token's name; assets and polls are not.
    let (s, _, audit) = f.get(Some("ops"), "/v1/audit?limit=1000").await;
    assert_eq!(s, 200);
    let rows = audit["audit"].as_array().unwrap();
    let has = |action: &str, token: &str| {
        rows.iter()
            .any(|r| r["action"] == action && r["token"] == token)
    };
    assert!(
        has("catalog.models", "reader") && has("catalog.record", "reader"),
        "{audit}"
    );
    assert!(
        has("catalog.fetch", "ops") && has("catalog.backfill", "ops"),
        "{audit}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["action"] == "catalog.asset" || r["action"] == "catalog.poll"),
        "{audit}"
    );

    // Revoking a token ends its sessions at the next page.
    let mut store =
        open_server_store(&format!("sqlite:{}", f.db.display()).parse().unwrap()).unwrap();
    store.revoke_token("reader", Timestamp::now()).unwrap();
    let (s, h, _) = b.get(Some(&reader), "/").await;
    assert_eq!(
        (s, h.get(LOCATION).unwrap().to_str().unwrap()),
        (303, "/login?ended=1")
    );
    let (s, _, _) = b.get(Some(&reader), "/runs.json").await;
    assert_eq!(s, 303, "the session is gone, not only refused once");

    // Logout needs the CSRF token; then the session is gone.
    let (s, _, _) = b.post(Some(&ops), "/logout", &[], &[]).await;
    assert_eq!(s, 403);
    let (s, _, _) = b.post(Some(&ops), "/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!(s, 303);
    let (s, h, _) = b.get(Some(&ops), "/").await;
    assert_eq!(
        (s, h.get(LOCATION).unwrap().to_str().unwrap()),
        (303, "/login")
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_outlives_a_restart_and_the_store_keeps_only_its_hash() {
    use sha2::Digest;
    let f = Fixture::start("", kye_runtime::Secrets::default()).await;
    let b = Browser::new(&f);
    let cookie = b.login(f.token("reader")).await;
    let (s, _, page) = b.get(Some(&cookie), "/").await;
    assert_eq!(s, 200, "{page}");
    let db = f.db.clone();
    let dir = f.stop().await;

    // The store holds the SHA-256 of the cookie's value, never the value.
    let value = cookie.split_once('=').unwrap().1.to_string();
    let hash = hex(&sha2::Sha256::digest(value.as_bytes()));
    let mut bytes = Vec::new();
    for file in ["kye.db", "kye.db-wal"] {
        if let Ok(b) = std::fs::read(dir.path().join(file)) {
            bytes.extend(b);
        }
    }
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds(&value), "the session cookie's value is in the store");
    assert!(holds(&hash), "the session is not in the store");

    // Another server on the same store (a restart, or a second one behind the balancer)
    // knows the session; a logout there ends it everywhere.
    let source = crate::server_api::source().await;
    let base = source.base_url().to_string();
    let store = format!("sqlite:{}", db.display());
    let f = Fixture::start_on(
        source,
        &base,
        dir,
        &store,
        "",
        kye_runtime::Secrets::default(),
    )
    .await;
    let b = Browser::new(&f);
    let (s, _, page) = b.get(Some(&cookie), "/").await;
    assert_eq!(s, 200, "signed out by a restart: {page}");
    let csrf = csrf_of(&page);
    let (s, h, _) = b
        .post(Some(&cookie), "/logout", &[("csrf", &csrf)], &[])
        .await;
    assert_eq!(
        (s, h.get(LOCATION).unwrap().to_str().unwrap()),
        (303, "/login")
    );
    let (s, h, _) = b.get(Some(&cookie), "/").await;
    assert_eq!(
        (s, h.get(LOCATION).unwrap().to_str().unwrap()),
        (303, "/login")
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
