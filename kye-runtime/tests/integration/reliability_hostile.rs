//! Hostile input through the whole runtime (request → registry → fetch → validate → SQLite):
//!
//! - malformed schemas: every file of kye-lang's fuzz corpus (`kye-lang/fuzz/corpus/compile`,
//!   also fed to `kye-lang/tests/lang/proptests.rs`'s random and mutated schemas) and every prefix
//!   and byte-flip of it compile to a schema or to diagnostics, never a panic;
//! - request strings carrying SQL and shell metacharacters: either a clear request error with a
//!   caret, or keys stored verbatim as data; no statement but kye's runs, no shell is started,
//!   the database keeps exactly its tables;
//! - models and edges named with SQL keywords (`Order`, `group`, `select`, `from`, `where`,
//!   `table`), end to end;
//! - a secret a fetcher reads itself and puts into a URL path and an error message never
//!   appears in captured logs (every span and event field at trace level), the summary, the
//!   error or the store.
//!
//! Store-level hostile names and values are in `store_hostile.rs`; auth secrets in
//! `runtime_secrets.rs`.

use crate::common;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use common::capture::Capture;
use kye_lang::Schema;
use kye_runtime::store::{IndexKey, KeyStatus, RecordQuery};
use kye_runtime::testing::{FetcherBuilder, Route, Routes, TestServer};
use kye_runtime::Config;
use kye_runtime::Secrets;
use kye_runtime::{Context, Error};
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
use kye_runtime::{GetResult, Runtime};
use serde_json::json;

// --- malformed schemas --------------------------------------------------------------------

#[test]
fn fuzz_corpus_and_its_mutations_never_panic_the_compiler() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kye-lang/fuzz/corpus/compile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "kye"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the fuzz corpus is in the tree");
    let (mut ok, mut diagnosed) = (0, 0);
    for file in &files {
        let text = std::fs::read(file).unwrap();
        let mut inputs: Vec<Vec<u8>> = vec![text.clone()];
        // Every prefix (a schema cut anywhere), and flips of single bytes into characters
        // that matter to the grammar.
        let step = (text.len() / 40).max(1);
        for cut in (0..text.len()).step_by(step) {
            inputs.push(text[..cut].to_vec());
            for b in [b'{', b'}', b'(', b')', b'"', b'/', b':', b'|', b'#', 0u8] {
                let mut m = text.clone();
                m[cut] = b;
                inputs.push(m);
            }
        }
        for input in inputs {
            let src = String::from_utf8_lossy(&input);
            let result = std::panic::catch_unwind(|| kye_lang::compile_str("fuzz.kye", &src));
            match result {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    assert!(!e.diagnostics.is_empty(), "an error without diagnostics");
                    // Rendering must not panic either, and says where.
                    let shown = e.render(false);
                    assert!(shown.contains("fuzz.kye:"), "{shown}");
                    diagnosed += 1;
                }
                Err(_) => panic!(
                    "compiler panicked on a mutation of {}:\n{src}",
                    file.display()
                ),
            }
        }
    }
    println!(
        "RELIABILITY schemas: corpus_files={} compiled={ok} diagnosed={diagnosed} panics=0",
        files.len()
    );
}

// --- SQL keyword names, metacharacters in requests and keys --------------------------------

const KEYWORD_SCHEMA: &str = r#"
Order(group: String)(select) {
  select: String
  from?: String
  where?: Boolean
  table*: String
}
"#;

fn keyword_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("keywords.kye", KEYWORD_SCHEMA).expect("compiles"))
}

/// Echoes the key into every field, as an API echoing its input would.
fn order_by_group(key: &Key, _ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::String(group)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        if group == "missing" {
            return Ok(None);
        }
        Ok(Some(json!({
            "group": group,
            "select": format!("select-{group}"),
            "from": group,
            "where": true,
            "table": [group.clone(), "DROP TABLE \"Order\""],
        })))
    })
}

static ORDER_BY_GROUP: FetcherRegistration =
    FetcherBuilder::new("Order", &["group"], "order_by_group", order_by_group).build();

fn keyword_runtime(db: &Path) -> Runtime {
    Runtime::builder()
        .registry(
            Registry::from_parts(
                [RegisteredModel::new(keyword_schema(), "Order").unwrap()],
                [&ORDER_BY_GROUP],
            )
            .unwrap(),
        )
        .config(Config::empty())
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap()
}

fn tables(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let names = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    names
}

/// Values that would do damage if they ever reached SQL text or a shell.
const NASTY: &[&str] = &[
    "'); DROP TABLE \"Order\";--",
    "x\"; DELETE FROM _kye_runs; --",
    "1 OR 1=1",
    "$(touch /tmp/kye-pwned)",
    "`touch /tmp/kye-pwned`",
    "a; rm -rf / #",
    "| cat /etc/passwd",
    "%s%n%x",
    "../../etc/passwd",
    "semi;colon&amp;&&||>>",
    "Robert'); DROP TABLE Students;--",
    "nul\0inside",
];

fn quote(s: &str) -> String {
    // The request grammar's string literal: double quotes, backslash escapes.
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[tokio::test]
async fn sql_keyword_names_and_metacharacter_keys_are_data_not_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hostile.db");
    let rt = keyword_runtime(&db);
    // Create the tables with one plain key first.
    let first = rt.get("Order.group = \"plain\"").await.unwrap();
    assert!(matches!(first, GetResult::Stored { .. }));
    let tables_before = tables(&db);
    assert!(
        tables_before.contains(&"Order".to_string()),
        "{tables_before:?}"
    );
    assert!(
        tables_before.contains(&"Order__table".to_string()),
        "{tables_before:?}"
    );

    for nasty in NASTY {
        let request = format!("Order.group = {}", quote(nasty));
        match rt
            .get(&request)
            .await
            .unwrap_or_else(|e| panic!("{request}: {e}"))
        {
            GetResult::Stored { record, .. } => {
                assert_eq!(record["group"], json!(nasty), "{request}");
                assert_eq!(record["table"][1], json!("DROP TABLE \"Order\""));
            }
            other => panic!("{request}: {:?}", other.status()),
        }
    }
    // A list of them in one backfill too.
    let list: Vec<String> = NASTY
        .iter()
        .map(|s| quote(&format!("{s} (list)")))
        .collect();
    let summary = rt
        .fetch(format!("Order.group in [{}]", list.join(", ")))
        .await
        .unwrap();
    assert_eq!(summary.counts.stored, NASTY.len() as u64, "{summary}");

    // Malformed requests with metacharacters outside string literals: a clear error with a
    // caret, nothing run, nothing recorded.
    let runs_before = rt.with_store(|s| s.runs(None).unwrap().len());
    for bad in [
        "Order.group = x'; DROP TABLE \"Order\";--",
        "Order.group = \"a\"; DROP TABLE \"Order\"",
        "Order.group = \"a\" OR 1=1",
        "Order.group = $(touch /tmp/kye-pwned)",
        "Order.group = `id`",
        "Order; DROP TABLE _kye_runs.group = \"a\"",
        "\"Order\".group = \"a\"",
        "Order.group in 1..=3 | sh",
        "Order.group = \"unterminated",
    ] {
        let err = match rt.get(bad).await {
            Err(e) => e.to_string(),
            Ok(r) => panic!("{bad:?} was accepted: {:?}", r.status()),
        };
        assert!(
            err.contains('^'),
            "{bad:?}: the error points at the problem:\n{err}"
        );
        let err2 = rt.fetch(bad).await.expect_err(bad).to_string();
        assert!(!err2.is_empty());
    }
    let runs_after = rt.with_store(|s| s.runs(None).unwrap().len());
    assert_eq!(runs_before, runs_after, "refused requests start no run");

    let stored = rt.with_store(|s| s.records(&RecordQuery::new("Order").limit(1000)).unwrap());
    assert_eq!(stored.len(), 1 + 2 * NASTY.len());
    for nasty in NASTY {
        assert!(stored.iter().any(|r| r["group"] == json!(nasty)), "{nasty}");
    }
    drop(rt);
    assert_eq!(tables(&db), tables_before, "no table created or dropped");
    assert!(!Path::new("/tmp/kye-pwned").exists(), "no shell ever ran");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    println!(
        "RELIABILITY hostile requests: keys_with_metacharacters={} stored_verbatim={} malformed_refused=9 tables_changed=0",
        2 * NASTY.len(),
        2 * NASTY.len()
    );
}

// --- secrets a fetcher handles itself --------------------------------------------------------

const SECRET: &str = "sk-live-HOSTILE-5e6f7a8b9c";

const SECRET_SCHEMA: &str = "Account(id: Number) { plan: String }";

fn secret_schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("secret.kye", SECRET_SCHEMA).expect("compiles"))
}

/// Puts the secret into the URL path (where no parameter name marks it) and, for odd ids,
/// into its own error message.
fn account_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let secret = ctx.secret("HOSTILE_API_KEY")?;
        let base = ctx.config_or("secret.base_url", "http://127.0.0.1:9");
        if id % 2 == 1 {
            return Err(Error::permanent(format!(
                "the API refused key {} for account {id}",
                secret.expose()
            )));
        }
        let url = format!("{base}/v1/{}/accounts/{id}/", secret.expose());
        let doc = ctx.get_json_value(&url).await?;
        Ok(Some(doc))
    })
}

static ACCOUNT_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Account", &["id"], "account_by_id", account_by_id).build();

#[tokio::test]
async fn a_secret_the_fetcher_embeds_itself_never_reaches_output() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    // Every request answers 500 after echoing nothing: retried (logged at debug), then failed.
    let server = TestServer::start(
        Routes::new().generate("/v1/", |_| Some(Route::text(500, "upstream exploded"))),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets_file = dir.path().join("secrets.env");
    std::fs::write(&secrets_file, format!("HOSTILE_API_KEY=\"{SECRET}\"\n")).unwrap();
    let mut cfg = Config::from_toml_str(
        "[run]\nmax_attempts = 2\nbackoff_base = \"5ms\"\nbackoff_max = \"10ms\"\n",
        None,
    )
    .unwrap();
    cfg.set("secret.base_url", server.base_url());
    let rt = Runtime::builder()
        .registry(
            Registry::from_parts(
                [RegisteredModel::new(secret_schema(), "Account").unwrap()],
                [&ACCOUNT_BY_ID],
            )
            .unwrap(),
        )
        .config(cfg)
        .env(Vec::new())
        .secrets(Secrets::load(Vec::<(String, String)>::new(), Some(&secrets_file)).unwrap())
        .store(format!("sqlite:{}", dir.path().join("kye.db").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let summary = rt.fetch("Account.id in 1..=4").await.unwrap();
    assert_eq!(summary.counts.failed, 4, "{summary}");
    let get_err = match rt.get("Account.id = 7").await {
        Ok(r) => format!("{:?}", r.status()),
        Err(e) => e.to_string(),
    };
    let mut shown = String::new();
    shown.push_str(&capture.text());
    writeln!(
        shown,
        "\n{summary}\n{}",
        serde_json::to_string(&summary).unwrap()
    )
    .unwrap();
    writeln!(shown, "{get_err}\n{rt:?}").unwrap();
    // Keys 1..=4 (the fetch) and 7 (the get) failed and say so; 5 and 6 were never asked for.
    for id in 1..=7 {
        let outcome = rt.with_store(|s| {
            s.latest_outcome("Account", &IndexKey::single("id", json!(id)))
                .unwrap()
        });
        writeln!(shown, "{outcome:?}").unwrap();
        let expected = matches!(id, 1..=4 | 7).then_some(KeyStatus::Failed);
        assert_eq!(outcome.map(|o| o.status), expected, "Account.id = {id}");
    }
    for run in rt.with_store(|s| s.runs(None).unwrap()) {
        writeln!(shown, "{run:?}").unwrap();
    }
    // The failures are explained…
    assert!(shown.contains("HTTP 500"), "{shown}");
    assert!(shown.contains("the API refused key [redacted]"), "{shown}");
    assert!(shown.contains("/v1/[redacted]/accounts/"), "{shown}");
    // …and the secret is nowhere.
    assert!(!shown.contains(SECRET), "secret leaked:\n{shown}");
    let raw_db = std::fs::read(dir.path().join("kye.db")).unwrap();
    let wal = std::fs::read(dir.path().join("kye.db-wal")).unwrap_or_default();
    for bytes in [&raw_db, &wal] {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "secret in the database file"
        );
    }
}
