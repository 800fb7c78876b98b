//! Secrets used for authentication never appear in logs (every span and event field, at trace
//! level), error messages, summaries or what the store records, even when the server echoes
//! the request back.

use crate::common;

use std::fmt::Write as _;
use std::sync::OnceLock;

use common::capture::Capture;
use common::echo::echo_server;
use kye_lang::Schema;
use kye_runtime::store::{IndexKey, KeyStatus};
use kye_runtime::testing::FetcherBuilder;
use kye_runtime::Config;
use kye_runtime::Secrets;
use kye_runtime::{Context, Error};
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetchRequest, Runtime};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};

const TOKEN: &str = "tok-SECRET-1f2e3d4c5b";
const APPID: &str = "appid-SECRET-9a8b7c6d";

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        kye_lang::compile_str("s.kye", "Item(id: Number) { name: String }").expect("compiles")
    })
}

fn item_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let base = ctx.config_or("echo.base_url", "");
        let v = ctx
            .get_json_value(&format!("{base}/items/{id}?lang=en"))
            .await?;
        Ok(Some(v))
    })
}

static ITEM_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Item", &["id"], "item_by_id", item_by_id).build();

#[tokio::test]
async fn secrets_stay_out_of_logs_errors_summaries_and_the_store() {
    let capture = Capture::default();
    let _guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(capture.clone()));

    let echo = echo_server().await;
    let port = echo.rsplit(':').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets_file = dir.path().join("secrets.env");
    std::fs::write(&secrets_file, format!("ECHO_APPID={APPID}\n")).unwrap();
    let config = Config::from_toml_str(
        &format!(
            r#"
            [run]
            max_attempts = 2
            backoff_base = "5ms"
            backoff_max = "10ms"
            [hosts."127.0.0.1:{port}".auth]
            type = "bearer"
            secret = "ECHO_TOKEN"
            [fetchers."Item.id".auth]
            type = "query"
            name = "appid"
            secret = "ECHO_APPID"
            [echo]
            base_url = "{echo}/status/401"
            "#
        ),
        None,
    )
    .unwrap();
    // ECHO_TOKEN from the environment, ECHO_APPID from the secrets file.
    let secrets = Secrets::load(
        [("ECHO_TOKEN".to_string(), TOKEN.to_string())],
        Some(&secrets_file),
    )
    .unwrap();
    let registry = Registry::from_parts(
        [RegisteredModel::new(schema(), "Item").unwrap()],
        [&ITEM_BY_ID],
    )
    .unwrap();
    let rt = Runtime::builder()
        .registry(registry)
        .config(config.clone())
        .secrets(secrets.clone())
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();

    // 401: the fetcher's query key uses `appid` (fetcher auth wins over the host's bearer).
    let s401 = rt
        .fetch(FetchRequest::new("Item.id in 1..=3"))
        .await
        .unwrap();
    assert_eq!(s401.counts.failed, 3, "{s401}");

    // 500 (retried, logged at debug) through a runtime whose fetcher has no own auth: the host's
    // bearer token is used and echoed back in the body.
    let mut config500 = config.clone();
    config500.set("echo.base_url", format!("{echo}/status/500"));
    config500.set("fetchers", toml::Value::Table(Default::default()));
    let rt500 = Runtime::builder()
        .registry(
            Registry::from_parts(
                [RegisteredModel::new(schema(), "Item").unwrap()],
                [&ITEM_BY_ID],
            )
            .unwrap(),
        )
        .config(config500)
        .secrets(secrets)
        .store(format!("sqlite:{}", dir.path().join("kye500.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let s500 = rt500.fetch("Item.id in 1..=2").await.unwrap();
    assert_eq!(s500.counts.failed, 2, "{s500}");
    assert!(s500.retries >= 2);
    let get_err = rt500.get("Item.id = 9").await.unwrap_err();

    // What a user or operator could see.
    let mut shown = String::new();
    shown.push_str(&capture.text());
    let _ = write!(
        shown,
        "\n{s401}\n{s401:?}\n{s500}\n{s500:?}\n{get_err}\n{get_err:?}"
    );
    let _ = write!(shown, "\n{rt:?}\n{:?}", rt.context());
    for id in 1..=3 {
        let o = rt.with_store(|s| {
            s.latest_outcome("Item", &IndexKey::single("id", id))
                .unwrap()
        });
        let o = o.unwrap();
        assert_eq!(o.status, KeyStatus::Failed);
        let _ = write!(shown, "\n{:?}", o.reason);
    }
    let runs = rt.with_store(|s| s.runs(None).unwrap());
    let _ = write!(shown, "\n{runs:?}");

    // The logs did capture the interesting parts (so the check below means something).
    assert!(shown.contains("HTTP 401"), "{shown}");
    assert!(shown.contains("HTTP 500"), "{shown}");
    assert!(shown.contains("appid=[redacted]"), "{shown}");
    assert!(shown.contains("retrying"), "{shown}");
    assert!(shown.contains("span key"), "{shown}");
    for secret in [TOKEN, APPID] {
        assert!(!shown.contains(secret), "secret leaked:\n{shown}");
    }
}

/// Runs `Item.id in 1..=2` against `base_url` (an echo server's 401) with `auth` as the echo
/// host's authentication and `secrets`; returns everything a user could see: the captured logs
/// at trace level, the summary (text, Debug, JSON), the stored reasons and a `get` error.
async fn everything_shown(
    echo: &str,
    base_url: &str,
    auth: &str,
    secrets: &[(&str, &str)],
) -> String {
    let capture = Capture::default();
    let _guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(capture.clone()));
    let port = echo.rsplit(':').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str(
        &format!(
            "[run]\nmax_attempts = 1\n[hosts.\"127.0.0.1:{port}\".auth]\n{auth}\n[echo]\nbase_url = \"{base_url}\"\n"
        ),
        None,
    )
    .unwrap();
    let secrets = Secrets::load(
        secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        None,
    )
    .unwrap();
    let registry = Registry::from_parts(
        [RegisteredModel::new(schema(), "Item").unwrap()],
        [&ITEM_BY_ID],
    )
    .unwrap();
    let rt = Runtime::builder()
        .registry(registry)
        .config(config)
        .secrets(secrets)
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let summary = rt.fetch("Item.id in 1..=2").await.unwrap();
    assert_eq!(summary.counts.failed, 2, "{summary}");
    let get_err = rt.get("Item.id = 9").await.unwrap_err();
    let mut shown = capture.text();
    let _ = write!(
        shown,
        "\n{summary}\n{summary:?}\n{}\n{get_err}\n{get_err:?}",
        serde_json::to_string(&summary).unwrap()
    );
    for id in 1..=2 {
        let o = rt
            .with_store(|s| {
                s.latest_outcome("Item", &IndexKey::single("id", id))
                    .unwrap()
            })
            .unwrap();
        let _ = write!(shown, "\n{:?}", o.reason);
    }
    shown
}

#[tokio::test]
async fn every_encoded_form_of_a_secret_is_redacted() {
    let echo = echo_server().await;
    let status = format!("{echo}/status/401");

    // Basic: what is sent is base64("reporter:pw-basic-51ab0c").
    let shown = everything_shown(
        &echo,
        &status,
        "type = \"basic\"\nusername = \"reporter\"\nsecret = \"PW\"",
        &[("PW", "pw-basic-51ab0c")],
    )
    .await;
    assert!(shown.contains("HTTP 401"), "{shown}");
    assert!(shown.contains("authorization: Basic [redacted]"), "{shown}");
    for form in ["pw-basic-51ab0c", "cmVwb3J0ZXI6cHctYmFzaWMtNTFhYjBj"] {
        assert!(!shown.contains(form), "{form} leaked:\n{shown}");
    }

    // A password in the base URL, which the client sends as Basic authentication.
    let with_userinfo = status.replace("http://", "http://reporter:pw%40url-77d1e@");
    let shown = everything_shown(
        &echo,
        &with_userinfo,
        "type = \"bearer\"\nsecret = \"T\"",
        &[("T", "tok-plain-6d2f")],
    )
    .await;
    assert!(shown.contains("HTTP 401"), "{shown}");
    // base64("reporter:pw@url-77d1e")
    for form in [
        "pw%40url-77d1e",
        "pw@url-77d1e",
        "cmVwb3J0ZXI6cHdAdXJsLTc3ZDFl",
    ] {
        assert!(!shown.contains(form), "{form} leaked:\n{shown}");
    }

    // A query secret that the URL carries percent-encoded.
    let shown = everything_shown(
        &echo,
        &status,
        "type = \"query\"\nname = \"k\"\nsecret = \"Q\"",
        &[("Q", "tok +/=&x-3b9c")],
    )
    .await;
    assert!(shown.contains("HTTP 401"), "{shown}");
    assert!(shown.contains("&k=[redacted]"), "{shown}");
    for form in [
        "tok +/=&x-3b9c",
        "tok+%2B%2F%3D%26x-3b9c",
        "tok%20%2B%2F%3D%26x-3b9c",
    ] {
        assert!(!shown.contains(form), "{form} leaked:\n{shown}");
    }

    // A bearer token with `"` and `\`, which the echoed JSON body escapes.
    let shown = everything_shown(
        &echo,
        &status,
        "type = \"bearer\"\nsecret = \"B\"",
        &[("B", r#"tok"q\b-8e1a"#)],
    )
    .await;
    assert!(shown.contains("Bearer [redacted]"), "{shown}");
    for form in [r#"tok"q\b-8e1a"#, r#"tok\"q\\b-8e1a"#] {
        assert!(!shown.contains(form), "{form} leaked:\n{shown}");
    }
}

/// A runtime for `config_file` with exactly the environment `env`.
fn build_from_file(
    config_file: &std::path::Path,
    env: &[(&str, &str)],
) -> kye_runtime::Result<Runtime> {
    Runtime::builder()
        .registry(
            Registry::from_parts(
                [RegisteredModel::new(schema(), "Item").unwrap()],
                [&ITEM_BY_ID],
            )
            .unwrap(),
        )
        .config_file(config_file)
        .env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .handle_ctrl_c(false)
        .build()
}

#[test]
fn kye_toml_paths_are_relative_to_it_and_the_environment_wins_over_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("catsource");
    std::fs::create_dir_all(&sub).unwrap();
    let config_file = sub.join("kye.toml");
    std::fs::write(
        &config_file,
        r#"
        store = "sqlite:data/cats.db"
        [secrets]
        file = ".secrets"
        [hosts."127.0.0.1:9".auth]
        type = "bearer"
        secret = "CAT_TOKEN"
        "#,
    )
    .unwrap();
    // The working directory is the crate's, not catsource/: the secrets file and the store
    // are found next to kye.toml.
    std::fs::write(sub.join(".secrets"), format!("CAT_TOKEN={TOKEN}\n")).unwrap();
    let rt = build_from_file(&config_file, &[]).expect("secrets file next to kye.toml");
    drop(rt);
    assert!(sub.join("data/cats.db").is_file());

    // No secrets file: the environment's token is enough.
    std::fs::remove_file(sub.join(".secrets")).unwrap();
    build_from_file(&config_file, &[("CAT_TOKEN", TOKEN)])
        .expect("the environment wins; the missing file is not needed");

    // Needed and found nowhere: the error names the secret and the missing file.
    let e = build_from_file(&config_file, &[]).unwrap_err().to_string();
    assert!(e.contains("secret CAT_TOKEN is not set"), "{e}");
    assert!(
        e.contains(&sub.join(".secrets").display().to_string()) && e.contains("does not exist"),
        "{e}"
    );
}
