//! End to end on PostgreSQL: the Pokémon example binary storing into a throwaway schema of
//! the server at `KYE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! fetching from loopback servers only. Outside CI a missing server skips these tests with
//! one printed reason; under `CI=true` they fail.
//!
//! - the example's fetch with `--follow`, then again with `--refresh`: same rows, no
//!   duplicates, rejects and drift kept, readable with plain SQL;
//! - two processes fetching overlapping key ranges at once;
//! - kill -9 of a fetch mid-run, then the same command resumes it;
//! - the server ending the fetch's connections (`pg_terminate_backend`) mid-run;
//! - a refused connection, a database that does not exist, a wrong password: exit 2 with one
//!   line naming host and database, never the password, before anything is fetched.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kye::testing::{Fixtures, TestServer};
use serde_json::Value;

use crate::{support, synthetic};

fn server_url() -> String {
    std::env::var("KYE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn client() -> Result<postgres::Client, String> {
    let spec = kye::store::PgSpec::parse(&server_url()).map_err(|e| e.to_string())?;
    let mut c = postgres::Config::new();
    c.host(&spec.host)
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.database)
        .connect_timeout(Duration::from_secs(5));
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        c.password(pw);
    }
    c.connect(postgres::NoTls).map_err(|e| e.to_string())
}

/// A client, or `None` (with one printed reason) when nothing answers outside CI.
fn server() -> Option<postgres::Client> {
    match client() {
        Ok(c) => Some(c),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true: PostgreSQL at {} does not answer: {e}",
                server_url()
            )
        }
        Err(e) => {
            eprintln!("skipping: nothing answers at {} ({e})", server_url());
            None
        }
    }
}

/// A schema of its own, dropped at the end.
struct Schema {
    name: String,
    dir: tempfile::TempDir,
}

impl Schema {
    fn new() -> Schema {
        static N: AtomicU32 = AtomicU32::new(0);
        Schema {
            name: format!(
                "kye_e2e_{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={}", self.name)
    }

    fn example(&self, base: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(support::example_binary());
        cmd.arg("--db")
            .arg(self.db())
            .args(args)
            .current_dir(self.dir.path())
            .env("POKEAPI_BASE_URL", base)
            .env_remove("KYE_POKEAPI__BASE_URL")
            .env_remove("KYE_CONFIG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    fn count(&self, c: &mut postgres::Client, sql: &str) -> i64 {
        let sql = sql.replace("S.", &format!("\"{}\".", self.name));
        c.query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Every Pokémon once, every child row with its parent and once per position.
    fn assert_whole(&self, c: &mut postgres::Client) -> i64 {
        let n = self.count(c, "SELECT count(*) FROM S.\"Pokemon\"");
        let distinct = self.count(c, "SELECT count(DISTINCT id) FROM S.\"Pokemon\"");
        assert_eq!(n, distinct, "a Pokémon twice");
        for child in ["Pokemon__types", "Pokemon__abilities"] {
            let orphans = self.count(
                c,
                &format!(
                    "SELECT count(*) FROM S.\"{child}\" t WHERE NOT EXISTS \
                     (SELECT 1 FROM S.\"Pokemon\" p WHERE p.id = t.id)"
                ),
            );
            assert_eq!(orphans, 0, "{child}: rows without their Pokémon");
            let holes = self.count(
                c,
                &format!(
                    "SELECT count(*) FROM (SELECT id FROM S.\"{child}\" GROUP BY id \
                     HAVING max(\"_kye_position\") + 1 <> count(*)) x"
                ),
            );
            assert_eq!(holes, 0, "{child}: positions not 0..n");
        }
        n
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = client() {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("run the example")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn synthetic_server(keys: u32) -> TestServer {
    let fixtures =
        Fixtures::from_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures"))
            .unwrap();
    let routes = synthetic::Synthetic::new(&fixtures, synthetic::Sizes::About(4_000))
        .expect("templates")
        .routes(&fixtures, keys);
    TestServer::start_on_thread(routes).unwrap()
}

#[test]
fn fetch_follow_then_refresh_keeps_one_row_per_key_with_rejects_and_drift() {
    let Some(mut c) = server() else { return };
    let s = Schema::new();
    let request = "Pokemon.id in 1..=151";
    let first = output(s.example(
        "http://127.0.0.1:9",
        &["--offline", "fetch", request, "--follow"],
    ));
    // 65: some fixtures are quarantined as rejects.
    assert!(
        matches!(first.status.code(), Some(0 | 65)),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let pokemon = s.assert_whole(&mut c);
    assert!(pokemon > 0);
    let types = s.count(&mut c, "SELECT count(*) FROM S.\"PokemonType\"");
    let children = s.count(&mut c, "SELECT count(*) FROM S.\"Pokemon__types\"");
    let rejects = s.count(&mut c, "SELECT count(*) FROM S._kye_rejects");
    let drift = s.count(&mut c, "SELECT count(*) FROM S._kye_drift");
    assert!(types > 0 && children > 0);
    assert!(rejects > 0, "the fixtures have invalid Pokémon");
    assert!(
        drift > 0,
        "the fixtures have fields the schema does not know"
    );
    // psql-style queries work on the typed columns and JSON payloads.
    let heavy = s.count(
        &mut c,
        "SELECT count(*) FROM S.\"Pokemon\" WHERE weight > 0 AND \"_kye_fetched_at\" <= now()",
    );
    assert_eq!(heavy, pokemon);
    let payloads = s.count(
        &mut c,
        "SELECT count(*) FROM S._kye_rejects WHERE payload->>'name' IS NOT NULL",
    );
    assert_eq!(payloads, rejects);

    let again = output(s.example(
        "http://127.0.0.1:9",
        &["--offline", "fetch", request, "--follow", "--refresh"],
    ));
    assert_eq!(again.status.code(), first.status.code());
    assert_eq!(s.assert_whole(&mut c), pokemon);
    assert_eq!(
        s.count(&mut c, "SELECT count(*) FROM S.\"PokemonType\""),
        types
    );
    assert_eq!(
        s.count(&mut c, "SELECT count(*) FROM S.\"Pokemon__types\""),
        children
    );
    assert_eq!(s.count(&mut c, "SELECT count(*) FROM S._kye_drift"), drift);
    assert_eq!(
        s.count(&mut c, "SELECT count(*) FROM S._kye_rejects"),
        2 * rejects
    );
    let runs = json(&output(s.example(
        "http://127.0.0.1:9",
        &["--offline", "runs", "--format", "json"],
    )));
    // Two fetches, each followed by a run of the card transformer.
    let fetches = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !crate::kill::is_transform(r))
        .count();
    assert_eq!(fetches, 2, "{runs}");
    // The readers of the CLI read PostgreSQL.
    let shown = json(&output(s.example(
        "http://127.0.0.1:9",
        &[
            "--offline",
            "show",
            "Pokemon",
            "--format",
            "json",
            "--limit",
            "1000",
        ],
    )));
    assert_eq!(shown.as_array().map(Vec::len), Some(pokemon as usize));
    let rej = json(&output(s.example(
        "http://127.0.0.1:9",
        &["--offline", "rejects", "--format", "json"],
    )));
    assert!(rej.as_array().is_some_and(|r| !r.is_empty()), "{rej}");
}

#[test]
fn two_processes_on_overlapping_ranges_store_every_key_once() {
    let Some(mut c) = server() else { return };
    let server = synthetic_server(900);
    let base = server.base_url().to_string();
    let s = Schema::new();
    let spawn = |range: &str| {
        s.example(&base, &["fetch", range])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("Pokemon.id in 1..=600");
    let b = spawn("Pokemon.id in 300..=900");
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 65)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stored = s.assert_whole(&mut c);
    let rejected = s.count(
        &mut c,
        "SELECT count(DISTINCT key) FROM S._kye_keys WHERE status = 'rejected'",
    );
    assert_eq!(
        stored + rejected,
        900,
        "every key stored or quarantined once"
    );
    let completed = s.count(
        &mut c,
        "SELECT count(*) FROM S._kye_runs WHERE status = 'completed' AND request NOT LIKE 'transform %'",
    );
    assert_eq!(completed, 2);
    let deadlocks = s.count(
        &mut c,
        "SELECT count(*) FROM S._kye_keys WHERE status = 'failed'",
    );
    assert_eq!(deadlocks, 0, "no key failed (no deadlock reached the user)");
}

/// The newest run's stored count, read with SQL.
fn stored_so_far(c: &mut postgres::Client, s: &Schema) -> i64 {
    c.query_one(
        &format!(
            "SELECT count(*) FROM \"{}\"._kye_keys WHERE status = 'stored'",
            s.name
        ),
        &[],
    )
    .map(|r| r.get(0))
    .unwrap_or(0)
}

fn wait_for_progress(c: &mut postgres::Client, s: &Schema, child: &mut Child, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored_so_far(c, s) < at_least {
        assert!(Instant::now() < deadline, "no progress");
        assert!(child.try_wait().unwrap().is_none(), "the fetch ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_mid_run_then_the_same_command_resumes() {
    let Some(mut c) = server() else { return };
    let keys = 3_000;
    let server = synthetic_server(keys);
    let base = server.base_url().to_string();
    let s = Schema::new();
    let request = format!("Pokemon.id in 1..={keys}");
    let mut child = s
        .example(&base, &["fetch", &request])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_progress(&mut c, &s, &mut child, 300);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = s.assert_whole(&mut c);
    assert!(before < i64::from(keys));
    let out = output(s.example(&base, &["fetch", &request]));
    assert!(
        matches!(out.status.code(), Some(0 | 65)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = s.assert_whole(&mut c);
    let rejected = s.count(
        &mut c,
        "SELECT count(DISTINCT key) FROM S._kye_keys WHERE status = 'rejected'",
    );
    assert_eq!(stored + rejected, i64::from(keys));
    let runs = json(&output(s.example(&base, &["runs", "--format", "json"])));
    let mut runs = runs.as_array().cloned().unwrap();
    runs.retain(|r| !crate::kill::is_transform(r));
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["status"], "interrupted", "{runs:?}");
    assert_eq!(runs[0]["status"], "completed", "{runs:?}");
    assert_eq!(runs[0]["resumed_from"], runs[1]["id"], "{runs:?}");
    assert!(runs[0]["counts"]["skipped"].as_i64().unwrap() >= before);
}

#[test]
fn connections_terminated_by_the_server_fail_cleanly_and_resume() {
    let Some(mut c) = server() else { return };
    let keys = 3_000;
    let server = synthetic_server(keys);
    let base = server.base_url().to_string();
    let s = Schema::new();
    let request = format!("Pokemon.id in 1..={keys}");
    let mut child = s
        .example(&base, &["fetch", &request])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_progress(&mut c, &s, &mut child, 300);
    let killed: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) x",
            &[&format!("kye {}", s.name)],
        )
        .unwrap()
        .get(0);
    assert!(killed > 0, "the fetch's connections were found");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Either the batch failed and the run stopped (non-zero), or the writer reconnected.
    assert!(!err.contains("panicked"), "{err}");
    s.assert_whole(&mut c);
    let out = output(s.example(&base, &["fetch", &request]));
    assert!(
        matches!(out.status.code(), Some(0 | 65)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = s.assert_whole(&mut c);
    let rejected = s.count(
        &mut c,
        "SELECT count(DISTINCT key) FROM S._kye_keys WHERE status = 'rejected'",
    );
    assert_eq!(stored + rejected, i64::from(keys), "every key exactly once");
    let running = s.count(
        &mut c,
        "SELECT count(*) FROM S._kye_runs WHERE status = 'running'",
    );
    assert_eq!(running, 0);
}

#[test]
fn unreachable_or_refused_servers_exit_2_naming_host_and_database_never_the_password() {
    let Some(_c) = server() else { return };
    let s = Schema::new();
    let spec = kye::store::PgSpec::parse(&server_url()).unwrap();
    let cases = [
        (
            "postgres://kye:hunter2secret@127.0.0.1:1/nowhere".to_string(),
            vec!["127.0.0.1:1", "nowhere"],
        ),
        (
            format!(
                "postgres://{}:hunter2secret@{}:{}/kye_no_such_database",
                spec.user, spec.host, spec.port
            ),
            vec!["kye_no_such_database", "does not exist"],
        ),
    ];
    for (db, says) in cases {
        let out = Command::new(support::example_binary())
            .args(["--offline", "--db", &db, "fetch", "Pokemon.id = 25"])
            .current_dir(s.dir.path())
            .env_remove("KYE_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for word in says {
            assert!(err.contains(word), "{err} should name {word}");
        }
        assert!(!err.contains("hunter2secret"), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    }
}

#[test]
fn fetch_queue_no_wait_then_two_worker_processes_complete_the_run() {
    let Some(mut c) = server() else { return };
    let s = Schema::new();
    let request = "Pokemon.id in 1..=151";
    // The store's tables, then the run recorded in the queue (nothing fetched yet).
    let queued = output(s.example(
        "http://127.0.0.1:9",
        &[
            "--offline",
            "--format",
            "json",
            "fetch",
            request,
            "--queue",
            "--no-wait",
            "--batch-attempts",
            "5",
            "--follow",
        ],
    ));
    assert_eq!(
        queued.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let v = json(&queued);
    let run = v["run"].as_i64().expect("the run id");
    assert_eq!(v["keys"], 151);
    assert_eq!(s.count(&mut c, "SELECT count(*) FROM S.\"Pokemon\""), 0);
    assert_eq!(
        s.count(
            &mut c,
            &format!("SELECT count(*) FROM S._kye_runs WHERE id = {run} AND status = 'running'")
        ),
        1
    );
    assert_eq!(
        s.count(
            &mut c,
            &format!("SELECT max_attempts::bigint FROM S._kye_queue_runs WHERE run_id = {run}")
        ),
        5,
        "--batch-attempts is the run's claims per batch"
    );
    // Two workers, as two machines would run them.
    let workers: Vec<Child> = ["w1", "w2"]
        .iter()
        .map(|name| {
            let mut cmd = s.example(
                "http://127.0.0.1:9",
                &[
                    "--offline",
                    "--format",
                    "json",
                    "worker",
                    "--exit-when-idle",
                    "--name",
                    name,
                ],
            );
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().expect("worker")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut keys = 0;
    for mut w in workers {
        loop {
            if w.try_wait().expect("wait").is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "a worker ran past 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = w.wait_with_output().expect("worker output");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        keys += json(&out)["keys"].as_i64().expect("keys committed");
    }
    let pokemon = s.assert_whole(&mut c);
    assert!(pokemon > 0);
    let outcomes = s.count(
        &mut c,
        &format!("SELECT count(*) FROM S._kye_keys WHERE run_id = {run}"),
    );
    assert_eq!(outcomes, keys, "one outcome per key the workers committed");
    let runs = json(&output(s.example(
        "http://127.0.0.1:9",
        &["--offline", "--format", "json", "runs"],
    )));
    let r = &runs[0];
    assert_eq!(r["id"], run);
    assert_eq!(r["status"], "completed", "{r}");
    let sum: i64 = ["stored", "rejected", "missing", "failed", "skipped"]
        .iter()
        .map(|k| r["counts"][k].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(sum, keys, "{r}");
}

/// The demo on a PostgreSQL store ends by pointing to `psql` (not `sqlite3`), with a command
/// that runs as printed: it connects, selects the store's schema and lists the Pokémon.
#[test]
fn the_demo_on_postgresql_points_to_psql_with_a_command_that_runs() {
    let Some(_c) = server() else { return };
    let s = Schema::new();
    let out = output(s.example("http://127.0.0.1:9", &["--offline"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Query it with psql"), "{stdout}");
    assert!(!stdout.contains("sqlite3"), "{stdout}");
    let command = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("psql "))
        .unwrap_or_else(|| panic!("no psql command in: {stdout}"));
    let has_psql = Command::new("psql").arg("--version").output().is_ok();
    if !has_psql {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true: psql is not installed");
        }
        eprintln!("skipping the psql part: psql is not installed");
        return;
    }
    let ran = Command::new("sh")
        .args(["-c", command])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run sh");
    let listed = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success() && listed.contains("bulbasaur") && listed.contains("grass/poison"),
        "{command}\n{listed}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}
