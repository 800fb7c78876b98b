//! Sources as packages end to end (issue 18): a small loopback cat API behind a bearer token,
//! declared with `kye::source!`, checked and fetched through this binary's own command line.
//!
//! The binary is its own kye CLI: started with `KYE_SOURCES_TEST_ARGS` set (a JSON array of
//! arguments) it runs them as `cats ARGS...` and exits with the CLI's code, so the tests below
//! see the real exit codes and every byte printed. Without it, it runs the tests (no libtest
//! harness: `harness = false`, the exit code of the CLI has to be the process's). Every server
//! binds 127.0.0.1; every run is one bounded process.

use std::process::{Command, ExitCode, Output};

use kye::testing::{Route, Routes, TestServer};
use serde_json::Value;

kye::models!("tests/sources/cats.kye");

kye::source! {
    /// A loopback cat API behind a bearer token.
    cats {
        hosts: ["127.0.0.1"],
        config: {
            /// Where the API lives.
            base_url: url,
            /// Cats per page.
            page_size: integer = 20,
        },
        secrets: {
            /// The API token, sent as a bearer token.
            CATAPI_TOKEN: bearer,
            /// A key the partner endpoints want (not needed here).
            CAT_PARTNER_KEY: header("X-Partner-Key")?,
        },
        probe: "Cat.id = 1",
    }
}

/// A cat by id: `GET {base_url}/cats/{id}` (kye sends the bearer token).
#[kye::get(Cat.id, source = cats)]
async fn cat(id: u32, ctx: &kye::Context) -> kye::Result<Option<Value>> {
    let base: String = ctx.config("base_url")?;
    let _page: u32 = ctx.config("page_size")?;
    match ctx.get_json_value(&format!("{base}/cats/{id}")).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.class() == kye::ErrorClass::Missing => Ok(None),
        Err(e) => Err(e),
    }
}

/// An owner: asks for a secret and a key its source does not declare (a mistake kye names).
#[kye::get(Owner.id, source = cats)]
async fn owner(id: u32, ctx: &kye::Context) -> kye::Result<Value> {
    if id == 1 {
        let _ = ctx.secret("OWNER_TOKEN")?;
    } else {
        let _: String = ctx.config("owner_url")?;
    }
    Ok(serde_json::json!({"id": id, "name": "nobody"}))
}

const TOKEN: &str = "cat-token-5e3b9a7c1d";
const WRONG: &str = "wrong-token-0f9e8d7c";
const ENV_ARGS: &str = "KYE_SOURCES_TEST_ARGS";

fn main() -> ExitCode {
    if let Ok(args) = std::env::var(ENV_ARGS) {
        let args: Vec<String> = serde_json::from_str(&args).expect("a JSON array of arguments");
        return kye::cli::App::new("cats", "0.1.0")
            .run_from(std::iter::once("cats".to_string()).chain(args));
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: [(&str, fn()); 6] = [
        (
            "sources_lists_names_and_states_never_values",
            sources_lists_names_and_states_never_values,
        ),
        (
            "check_reports_a_missing_secret_with_exit_2",
            check_reports_a_missing_secret_with_exit_2,
        ),
        (
            "check_reports_a_wrong_token_as_refused_credentials",
            check_reports_a_wrong_token_as_refused_credentials,
        ),
        (
            "check_reports_an_unreachable_host_with_exit_69",
            check_reports_an_unreachable_host_with_exit_69,
        ),
        (
            "fetch_refuses_to_start_without_the_secret_and_sends_it_when_set",
            fetch_refuses_to_start_without_the_secret_and_sends_it_when_set,
        ),
        (
            "an_undeclared_name_at_run_time_is_an_error_naming_the_source",
            an_undeclared_name_at_run_time_is_an_error_naming_the_source,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        failed += usize::from(outcome.is_err());
    }
    if failed > 0 {
        println!("{failed} failed");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The cat API: cat 1 and 2 for the right token only, 401 otherwise.
fn server() -> TestServer {
    let auth = format!("Bearer {TOKEN}");
    TestServer::start_on_thread(
        Routes::new()
            .route(
                "/cats/1",
                Route::json(r#"{"id": 1, "name": "Tom"}"#).require_authorization(&auth),
            )
            .route(
                "/cats/2",
                Route::json(r#"{"id": 2, "name": "Felix"}"#).require_authorization(&auth),
            ),
    )
    .expect("loopback server")
}

/// Runs this binary as the CLI with `args` in `dir`, with `env` and nothing of the caller's
/// kye environment.
fn cli(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.current_dir(dir)
        .env(ENV_ARGS, serde_json::to_string(args).unwrap())
        .env_remove("CATAPI_TOKEN")
        .env_remove("CAT_PARTNER_KEY")
        .env_remove("KYE_CONFIG")
        .env_remove("KYE_SECRETS_FILE")
        .env_remove("KYE_CATS__BASE_URL")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the CLI")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No byte of any output holds a secret's value.
fn never_shows_secrets(out: &Output) {
    let (o, e) = text(out);
    for secret in [TOKEN, WRONG] {
        assert!(
            !o.contains(secret) && !e.contains(secret),
            "a secret was printed:\n{o}\n{e}"
        );
    }
}

fn sources_lists_names_and_states_never_values() {
    let dir = tempfile::tempdir().unwrap();
    let base = "http://127.0.0.1:9/api";
    let env = [("KYE_CATS__BASE_URL", base), ("CATAPI_TOKEN", TOKEN)];
    let out = cli(dir.path(), &["sources"], &env);
    never_shows_secrets(&out);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}\n{e}");
    assert!(
        o.contains("cats 0.1.0 (kye-workspace): A loopback cat API behind a bearer token."),
        "{o}"
    );
    assert!(o.contains("CATAPI_TOKEN (bearer) [set]"), "{o}");
    assert!(
        o.contains("CAT_PARTNER_KEY (header X-Partner-Key, optional) [unset]"),
        "{o}"
    );
    assert!(o.contains("cats.base_url (url, required) [set]"), "{o}");
    assert!(o.contains("fetchers:     Cat.id, Owner.id"), "{o}");

    let out = cli(dir.path(), &["sources", "--format", "json"], &env);
    never_shows_secrets(&out);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let cats = &json["sources"][0];
    assert_eq!(cats["name"], "cats");
    assert_eq!(cats["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(cats["hosts"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(cats["secrets"][0]["name"], "CATAPI_TOKEN");
    assert_eq!(cats["secrets"][0]["status"], "set");
    assert_eq!(cats["secrets"][1]["status"], "unset");
    assert_eq!(cats["config"][0]["status"]["state"], "set");
    assert_eq!(cats["config"][1]["default"], "20");
    assert_eq!(cats["probe"], "Cat.id = 1");

    let out = cli(dir.path(), &["sources", "--format", "markdown"], &env);
    never_shows_secrets(&out);
    let (o, _) = text(&out);
    assert!(
        o.contains("| `cats` | 0.1.0 | `kye-workspace` | `127.0.0.1` |"),
        "{o}"
    );
    assert!(o.contains("`CATAPI_TOKEN` (bearer) [set]"), "{o}");

    // The registry listing (REGISTRY.md) has the sources, without what is set here.
    let out = cli(dir.path(), &["list", "--format", "markdown"], &env);
    let (o, _) = text(&out);
    assert!(
        o.contains("## Sources") && o.contains("`CATAPI_TOKEN` (bearer)"),
        "{o}"
    );
    assert!(!o.contains("[set]"), "{o}");
}

fn check_reports_a_missing_secret_with_exit_2() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let out = cli(
        dir.path(),
        &["sources", "check"],
        &[("KYE_CATS__BASE_URL", server.base_url())],
    );
    never_shows_secrets(&out);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert_eq!(o, "cats 0.1.0: missing secret `CATAPI_TOKEN`\n");
    // Nothing was asked of the source.
    assert_eq!(server.stats().requests(), 0);

    // A missing required key and a malformed one are configuration problems too.
    let out = cli(
        dir.path(),
        &["sources", "check", "cats"],
        &[("CATAPI_TOKEN", TOKEN)],
    );
    let (o, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}");
    assert!(
        o.contains("missing config `base_url` (set cats.base_url in kye.toml)"),
        "{o}"
    );
    let out = cli(
        dir.path(),
        &["sources", "check", "--format", "json"],
        &[("CATAPI_TOKEN", TOKEN), ("KYE_CATS__BASE_URL", "not a url")],
    );
    never_shows_secrets(&out);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json["sources"][0]["state"], "misconfigured", "{json}");
    assert!(
        json["sources"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("expected an absolute http(s) URL"),
        "{json}"
    );
    // An unknown source is a usage error.
    let out = cli(dir.path(), &["sources", "check", "dogs"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("no source is called `dogs` (declared: cats)"));
}

fn check_reports_a_wrong_token_as_refused_credentials() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let host = server.base_url().trim_start_matches("http://").to_string();
    let out = cli(
        dir.path(),
        &["sources", "check"],
        &[
            ("KYE_CATS__BASE_URL", server.base_url()),
            ("CATAPI_TOKEN", WRONG),
        ],
    );
    never_shows_secrets(&out);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert_eq!(
        o,
        format!("cats 0.1.0: credentials refused by {host} (HTTP 401)\n")
    );
    assert_eq!(server.requests("/cats/1"), 1);

    // The right token: the probe answers, exit 0; from a secrets file as well.
    let out = cli(
        dir.path(),
        &["sources", "check", "--format", "json"],
        &[
            ("KYE_CATS__BASE_URL", server.base_url()),
            ("CATAPI_TOKEN", TOKEN),
        ],
    );
    never_shows_secrets(&out);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sources"][0]["state"], "ok", "{json}");
    assert_eq!(json["sources"][0]["probed"], true, "{json}");
    let secrets = dir.path().join("secrets.env");
    std::fs::write(&secrets, format!("CATAPI_TOKEN={TOKEN}\n")).unwrap();
    let out = cli(
        dir.path(),
        &["sources", "check"],
        &[
            ("KYE_CATS__BASE_URL", server.base_url()),
            ("KYE_SECRETS_FILE", secrets.to_str().unwrap()),
        ],
    );
    never_shows_secrets(&out);
    assert_eq!(text(&out).0, "cats 0.1.0: ok (probe answered)\n");
    assert_eq!(out.status.code(), Some(0));

    // Sealed in the store (as `kye serve` holds it): seen by the check given the master key.
    let master = "ab".repeat(32);
    let db = dir.path().join("kye.db");
    let db = db.to_str().unwrap();
    let mut set = Command::new(std::env::current_exe().expect("test binary"));
    set.current_dir(dir.path())
        .env(
            ENV_ARGS,
            serde_json::to_string(&["--db", db, "secret", "set", "CATAPI_TOKEN"]).unwrap(),
        )
        .env("KYE_MASTER_KEY", &master)
        .env_remove("CATAPI_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = set.spawn().expect("secret set");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(TOKEN.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    never_shows_secrets(&out);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = cli(
        dir.path(),
        &["--db", db, "sources", "check"],
        &[
            ("KYE_CATS__BASE_URL", server.base_url()),
            ("KYE_MASTER_KEY", &master),
        ],
    );
    never_shows_secrets(&out);
    assert_eq!(
        text(&out).0,
        "cats 0.1.0: ok (probe answered)\n",
        "{:?}",
        text(&out)
    );
    // Without the key the sealed value stays closed: the secret is missing.
    let out = cli(
        dir.path(),
        &["--db", db, "sources", "check"],
        &[("KYE_CATS__BASE_URL", server.base_url())],
    );
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

fn check_reports_an_unreachable_host_with_exit_69() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let out = cli(
        dir.path(),
        &["sources", "check"],
        &[("KYE_CATS__BASE_URL", &base), ("CATAPI_TOKEN", TOKEN)],
    );
    never_shows_secrets(&out);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(69), "{o}\n{e}");
    assert!(
        o.starts_with(&format!("cats 0.1.0: host unreachable: 127.0.0.1:{port} (")),
        "{o}"
    );
}

fn fetch_refuses_to_start_without_the_secret_and_sends_it_when_set() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let out = cli(
        dir.path(),
        &["fetch", "Cat.id in 1..=2"],
        &[("KYE_CATS__BASE_URL", server.base_url())],
    );
    never_shows_secrets(&out);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert!(
        e.contains("source `cats`: missing secret `CATAPI_TOKEN`"),
        "{e}"
    );
    assert_eq!(server.stats().requests(), 0);
    assert!(
        !dir.path().join("kye.db").exists() || !o.contains("run 1"),
        "{o}"
    );

    let out = cli(
        dir.path(),
        &["fetch", "Cat.id in 1..=2", "--format", "json"],
        &[
            ("KYE_CATS__BASE_URL", server.base_url()),
            ("CATAPI_TOKEN", TOKEN),
        ],
    );
    never_shows_secrets(&out);
    let summary: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(out.status.code(), Some(0), "{summary}\n{}", text(&out).1);
    assert_eq!(summary["counts"]["stored"], 2, "{summary}");

    // Provenance: each stored row says which package version produced it.
    let store = kye::store::open_store_read_only(
        &kye::store::StoreSpec::from_path_or_spec(&dir.path().join("kye.db").to_string_lossy())
            .unwrap(),
    )
    .unwrap();
    let mut query = kye::store::RecordQuery::new("Cat");
    query.provenance = true;
    let sources: Vec<Value> = store
        .records(&query)
        .unwrap()
        .iter()
        .map(|r| r["_kye"]["source"].clone())
        .collect();
    assert_eq!(
        sources,
        [Value::from("cats@0.1.0"), Value::from("cats@0.1.0")]
    );
    // The store never holds the token.
    let bytes = std::fs::read(dir.path().join("kye.db")).unwrap_or_default();
    assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
}

fn an_undeclared_name_at_run_time_is_an_error_naming_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("KYE_CATS__BASE_URL", "http://127.0.0.1:9"),
        ("CATAPI_TOKEN", TOKEN),
    ];
    let out = cli(dir.path(), &["get", "Owner.id = 1"], &env);
    never_shows_secrets(&out);
    let (o, e) = text(&out);
    assert_ne!(out.status.code(), Some(0), "{o}\n{e}");
    assert!(
        format!("{o}{e}").contains("source `cats` declares no secret `OWNER_TOKEN` (it declares: CATAPI_TOKEN, CAT_PARTNER_KEY)"),
        "{o}\n{e}"
    );
    let out = cli(dir.path(), &["get", "Owner.id = 2"], &env);
    let (o, e) = text(&out);
    assert!(
        format!("{o}{e}").contains("source `cats` declares no configuration key `owner_url` (it declares: base_url, page_size)"),
        "{o}\n{e}"
    );
}
