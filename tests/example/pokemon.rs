//! End to end: the Pokémon example binary (`cargo run --example pokemon`) against its own
//! offline fixture server, each test in its own temporary directory and database. Nothing
//! here reaches a public host: every run uses `--offline` or a loopback `POKEAPI_BASE_URL`.
//!
//! The binary is built once per test process with `cargo build --workspace --example pokemon`
//! (a no-op after `cargo test --workspace` built it) and located through cargo's JSON messages,
//! so this works on a fresh clone, with any target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support;

/// A temporary working directory with its own database.
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.dir.path().join("pokemon.db")
    }

    /// Runs the example with `args` in the sandbox; `--db` points at its database, the
    /// environment cannot point it at a public host.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(support::example_binary());
        cmd.args(args)
            .arg("--db")
            .arg(self.db())
            .current_dir(self.dir.path())
            .env_remove("POKEAPI_BASE_URL")
            .env_remove("KYE_POKEAPI__BASE_URL")
            .env_remove("KYE_CONFIG")
            .env_remove("RUST_BACKTRACE")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().expect("run the pokemon example"))
    }
}

pub(crate) struct Run(Output);

impl Run {
    pub(crate) fn code(&self) -> i32 {
        self.0.status.code().expect("exited with a code")
    }
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }
    #[track_caller]
    pub(crate) fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

fn names(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn demo_fetches_what_the_fixtures_have_and_explains_the_rest() {
    let s = Sandbox::new();
    let run = s.run(&["--offline"]).expect(0);
    let out = run.stdout();
    // 14 Pokémon in the fixtures, haunter quarantined; 137 ids the fixtures lack.
    assert!(out.contains("49 stored"), "summary: {out}");
    assert!(out.contains("1 rejected, 137 missing, 0 failed"), "{out}");
    assert!(
        out.contains("Pokemon 93"),
        "the rejected key is named: {out}"
    );
    assert!(out.contains("bulbasaur"), "a few stored rows: {out}");
    assert!(out.contains("sqlite3 "), "a query to paste: {out}");
    let db = std::fs::canonicalize(s.db()).unwrap();
    assert!(
        out.contains(&db.display().to_string()),
        "where the data is: {out}"
    );

    // References were followed: every type and ability of the stored Pokémon is stored.
    let types = s
        .run(&["show", "PokemonType", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(types.as_array().unwrap().len(), 10, "{types}");
    let abilities = s
        .run(&["show", "PokemonAbility", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(abilities.as_array().unwrap().len(), 26);

    // The three steps: the list endpoint's keys counted, the fetch, the cards transformed.
    assert!(
        out.contains("14 Pokémon listed (ids 1, 4, 6, 7, 25, ...)"),
        "{out}"
    );
    assert!(
        out.contains("transform pokemon_card -> PokemonCard (run 2): 13 transformed, 0 unchanged"),
        "{out}"
    );
    assert!(
        out.contains("fire, flying, ice, psychic"),
        "bulbasaur's card: {out}"
    );

    // The demo's runs are in the history with their counts, the transform's newest.
    let runs = s.run(&["runs", "--format", "json"]).expect(0).json();
    assert_eq!(runs[0]["request"], "transform pokemon_card");
    assert_eq!(runs[0]["counts"]["stored"], 13);
    let run = &runs[1];
    assert_eq!(run["request"], "Pokemon.id in 1..=151");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["counts"]["stored"], 13 + 10 + 26);
    assert_eq!(run["counts"]["rejected"], 1);
    assert_eq!(run["counts"]["missing"], 137);
    // Runs name the source package (and version) of what they were asked for.
    let source = run["source"].as_str().expect("the run's source");
    assert!(source.starts_with("pokeapi@"), "{run}");
    let text = s.run(&["runs"]).expect(0).stdout();
    assert!(text.contains("source") && text.contains(source), "{text}");
}

#[test]
fn get_prints_the_stored_record_and_exit_codes_follow_the_outcome() {
    let s = Sandbox::new();
    let run = s
        .run(&["--offline", "get", "Pokemon.name = \"pikachu\""])
        .expect(0);
    let record: Value = run.json();
    assert_eq!(record["id"], 25);
    assert_eq!(record["types"], serde_json::json!(["electric"]));
    assert_eq!(
        record["hidden_abilities"],
        serde_json::json!(["lightning-rod"])
    );
    // Pikachu's `cries` is a field the schema does not know: stored anyway, reported as drift.
    assert!(run.stderr().contains("cries"), "{}", run.stderr());
    let drift = s.run(&["drift", "--format", "json"]).expect(0).json();
    assert_eq!(drift[0]["model"], "Pokemon");
    assert_eq!(drift[0]["path"], "cries");

    // JSON output carries the status.
    let j = s
        .run(&["--offline", "get", "Pokemon.id = 7", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(j["status"], "stored");
    assert_eq!(j["record"]["name"], "squirtle");

    // Missing: the fixtures have no 151. Not an error.
    let j = s
        .run(&["--offline", "--format", "json", "get", "Pokemon.id = 151"])
        .expect(0)
        .json();
    assert_eq!(j["status"], "missing");
    assert!(j["reason"].as_str().unwrap().contains("404"), "{j}");

    // Rejected: haunter's base_experience is null; exit 65 with the error named.
    let run = s.run(&["--offline", "get", "Pokemon.id = 93"]).expect(65);
    assert!(run.stderr().contains("base_experience"), "{}", run.stderr());
    assert!(run.stdout().is_empty(), "nothing stored, nothing printed");
}

#[test]
fn fetch_follow_stores_references_and_show_nests_them() {
    let s = Sandbox::new();
    let run = s
        .run(&["--offline", "fetch", "Pokemon.id in [1, 4, 25]", "--follow"])
        .expect(0);
    let out = run.stdout();
    assert!(out.contains("run 1 completed"), "{out}");
    // Not a terminal: no progress bar escape codes in the output.
    assert!(!run.stderr().contains('\u{1b}'), "{}", run.stderr());

    let types = s
        .run(&["show", "PokemonType", "--format", "json"])
        .expect(0)
        .json();
    let mut got = names(&types);
    got.sort();
    assert_eq!(got, ["electric", "fire", "grass", "poison"]);

    // show --format json: referenced records are embedded.
    let pikachu = s
        .run(&[
            "show",
            "Pokemon",
            "--where",
            "name = pikachu",
            "--format",
            "json",
        ])
        .expect(0)
        .json();
    assert_eq!(pikachu.as_array().unwrap().len(), 1);
    let electric = &pikachu[0]["types"][0];
    assert_eq!(electric["name"], "electric");
    assert_eq!(electric["generation"], "generation-i");
    assert_eq!(
        electric["double_damage_from"],
        serde_json::json!(["ground"])
    );
    let static_ = &pikachu[0]["abilities"][0];
    assert_eq!(static_["name"], "static");
    assert!(static_["short_effect"]
        .as_str()
        .unwrap()
        .starts_with("Has a 30% chance of paralyzing"));

    // The table form and --limit.
    let table = s
        .run(&["show", "Pokemon", "--limit", "2"])
        .expect(0)
        .stdout();
    assert!(
        table.contains("bulbasaur") && table.contains("charmander"),
        "{table}"
    );
    assert!(!table.contains("pikachu"), "{table}");

    // Freshness: within --max-age nothing is fetched again.
    let j = s
        .run(&[
            "--offline",
            "fetch",
            "Pokemon.id in [1, 4, 25]",
            "--max-age",
            "1h",
            "--format",
            "json",
        ])
        .expect(0)
        .json();
    assert_eq!(j["counts"]["skipped"], 3, "{j}");
    assert_eq!(j["counts"]["stored"], 0, "{j}");
}

#[test]
fn rejects_show_the_quarantined_payload_and_fetch_exits_65() {
    let s = Sandbox::new();
    let run = s
        .run(&["--offline", "fetch", "Pokemon.id in 92..=93"])
        .expect(65);
    assert!(
        run.stdout().contains("1 stored, 1 rejected"),
        "{}",
        run.stdout()
    );
    assert!(run.stdout().contains("rejects --run 1"), "{}", run.stdout());

    let rejects = s
        .run(&["rejects", "--run", "1", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(rejects.as_array().unwrap().len(), 1);
    let r = &rejects[0];
    assert_eq!(r["model"], "Pokemon");
    assert_eq!(r["key"], serde_json::json!({"id": 93}));
    // The payload as the fetcher returned it: the null kept, nothing invented.
    assert_eq!(r["payload"]["name"], "haunter");
    assert_eq!(r["payload"]["base_experience"], Value::Null);
    assert_eq!(r["errors"][0]["kind"], "MissingValue");
    // The reason names the field once, not `base_experience: Pokemon.base_experience ...`.
    let reason = r["reason"].as_str().unwrap_or_default();
    assert_eq!(reason.matches("base_experience").count(), 1, "{reason}");

    let text = s.run(&["rejects"]).expect(0).stdout();
    assert!(text.contains("MissingValue"), "{text}");
    assert!(text.contains("haunter"), "{text}");

    // An unknown run is a usage error.
    let run = s.run(&["rejects", "--run", "99"]).expect(2);
    assert!(run.stderr().contains("no run 99"), "{}", run.stderr());
}

#[test]
fn usage_errors_exit_2_with_one_clear_paragraph() {
    let s = Sandbox::new();
    // A request naming an edge that does not exist: the column, and a suggestion.
    let run = s.run(&["--offline", "fetch", "Pokemon.idd = 1"]).expect(2);
    let err = run.stderr();
    assert!(err.contains("did you mean `id`?"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );

    // A value that cannot be the index type: refused before anything is fetched.
    let run = s
        .run(&["--offline", "get", "Pokemon.id = \"abc\""])
        .expect(2);
    assert!(run.stderr().contains("Pokemon.id"), "{}", run.stderr());
    assert!(!s.db().exists(), "nothing was opened or stored");

    // get takes one key.
    let run = s
        .run(&["--offline", "get", "Pokemon.id in 1..=3"])
        .expect(2);
    assert!(run.stderr().contains("use `fetch`"), "{}", run.stderr());

    // Unknown subcommand, flag after the subcommand that belongs before it.
    s.run(&["bogus"]).expect(2);
    s.run(&["fetch", "Pokemon.id = 1", "--offline"]).expect(2);

    // Reading a store that does not exist says so.
    let run = s.run(&["runs"]).expect(2);
    assert!(run.stderr().contains("no kye store"), "{}", run.stderr());

    // show on a model name with a typo.
    s.run(&["--offline", "get", "Pokemon.id = 1"]).expect(0);
    let run = s.run(&["show", "pokemon"]).expect(2);
    assert!(
        run.stderr().contains("did you mean `Pokemon`?"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_store_url_of_an_unsupported_scheme_is_an_error_and_creates_nothing() {
    let s = Sandbox::new();
    for (db, says) in [
        (
            "mysql://user@localhost/cats",
            "unknown store scheme `mysql://`",
        ),
        (
            "mongodb://user@localhost/cats",
            "unknown store scheme `mongodb://`",
        ),
    ] {
        let out = Command::new(support::example_binary())
            .args(["--offline", "--db", db, "get", "Pokemon.id = 25"])
            .current_dir(s.dir.path())
            .env_remove("KYE_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .expect("run the pokemon example");
        let run = Run(out).expect(2);
        let err = run.stderr();
        assert!(err.contains(says), "{err}");
        assert!(
            err.contains("sqlite:PATH") && err.contains("dir:PATH") && err.contains("postgres://"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(s.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{db} created {left:?}");
    }
}

#[test]
fn without_a_reachable_source_it_says_so_in_one_line_and_points_to_offline() {
    let s = Sandbox::new();
    // A loopback port nobody listens on stands in for "no network".
    let run = s
        .run_env(&[], &[("POKEAPI_BASE_URL", "http://127.0.0.1:9")])
        .expect(69);
    let err = run.stderr();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--offline"), "{err}");
    assert!(!s.db().exists());
}

#[test]
fn pokeapi_base_url_points_the_fetchers_at_another_server() {
    // A server of our own on loopback, started by this test, serving the same fixtures.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let fixtures = kye::testing::Fixtures::from_dir(dir).unwrap();
    let server = kye::testing::TestServer::start_on_thread(fixtures.routes()).unwrap();
    let s = Sandbox::new();
    let j = s
        .run_env(
            &["get", "Pokemon.name = \"mr-mime\"", "--format", "json"],
            &[("POKEAPI_BASE_URL", server.base_url())],
        )
        .expect(0)
        .json();
    assert_eq!(j["record"]["id"], 122);
    assert_eq!(
        j["record"]["types"],
        serde_json::json!(["psychic", "fairy"])
    );
    assert_eq!(server.requests("/pokemon/mr-mime/"), 1);
}

/// The fixtures behind a loopback server that answers every request after `stall`.
fn slow_server(stall: std::time::Duration) -> kye::testing::TestServer {
    use kye::testing::{Chaos, Fault, Fixtures, TestServer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let routes = Fixtures::from_dir(dir)
        .unwrap()
        .routes()
        .chaos(Chaos::new(7, 1.0).fault(Fault::Stall(stall), 1));
    TestServer::start_on_thread(routes).unwrap()
}

#[test]
fn fetch_logs_plain_progress_lines_when_stderr_is_not_a_terminal() {
    let server = slow_server(std::time::Duration::from_millis(1300));
    let s = Sandbox::new();
    let run = s
        .run_env(
            &[
                "fetch",
                "Pokemon.id in [1, 4, 6, 7, 25]",
                "--concurrency",
                "1",
            ],
            &[("POKEAPI_BASE_URL", server.base_url())],
        )
        .expect(0);
    let err = run.stderr();
    // One line every 5 s: `run 1: 4/5 keys (4 stored, 0 rejected, 0 missing, 0 failed) ...`.
    let line = err
        .lines()
        .find(|l| l.starts_with("run 1: ") && l.contains("/5 keys ("))
        .unwrap_or_else(|| panic!("no progress line in stderr:\n{err}"));
    assert!(
        line.contains("stored") && line.contains("keys/s, ETA"),
        "{line}"
    );
    assert!(!err.contains('\u{1b}'), "no terminal escapes: {err}");
    assert!(run.stdout().contains("5 stored"), "{}", run.stdout());
}

#[test]
fn ctrl_c_stops_the_run_with_130_and_the_same_command_resumes_it() {
    let server = slow_server(std::time::Duration::from_millis(1500));
    let s = Sandbox::new();
    let request = "Pokemon.id in [1, 4, 6, 7, 25, 39]";
    let child = Command::new(support::example_binary())
        .args(["fetch", request, "--concurrency", "1", "--format", "json"])
        .arg("--db")
        .arg(s.db())
        .current_dir(s.dir.path())
        .env("POKEAPI_BASE_URL", server.base_url())
        .env_remove("KYE_POKEAPI__BASE_URL")
        .env_remove("KYE_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the first key finish (1.5 s) and the second start, then interrupt.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = Run(child.wait_with_output().unwrap()).expect(130);
    let first = out.json();
    assert_eq!(first["status"], "interrupted", "{first}");
    let done = first["counts"]["stored"].as_u64().unwrap();
    // Normally 2 (the first key, and the one in flight finishing in the grace period); a
    // slow machine may have done fewer. Never all: the run stopped early.
    assert!(done < 6, "{first}");

    // The same command again (a fast server now) resumes: finished keys are skipped.
    let fast = slow_server(std::time::Duration::ZERO);
    let second = s
        .run_env(
            &["fetch", request, "--format", "json"],
            &[("POKEAPI_BASE_URL", fast.base_url())],
        )
        .expect(0)
        .json();
    assert_eq!(second["resumed_from"], first["run"], "{second}");
    assert_eq!(
        second["counts"]["skipped"].as_u64().unwrap(),
        done,
        "{second}"
    );
    assert_eq!(
        second["counts"]["stored"].as_u64().unwrap(),
        6 - done,
        "{second}"
    );
}

#[test]
fn dot_keys_are_refused_before_any_request() {
    // `..` and `.` (and their encoded forms) would address `/api/v2/` or the list endpoint.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let fixtures = kye::testing::Fixtures::from_dir(dir).unwrap();
    let server = kye::testing::TestServer::start_on_thread(fixtures.routes()).unwrap();
    let s = Sandbox::new();
    for key in ["..", ".", "%2E%2E", "a/b"] {
        let request = format!("Pokemon.name = \"{key}\"");
        let run = s
            .run_env(
                &["get", &request],
                &[("POKEAPI_BASE_URL", server.base_url())],
            )
            .expect(65);
        let err = run.stderr();
        assert!(
            err.contains(&format!("the key \"{key}\" cannot be one URL path segment")),
            "{err}"
        );
    }
    assert_eq!(server.stats().requests(), 0);
}

#[test]
fn a_bare_model_fetches_every_pokemon_the_list_pages_name() {
    let s = Sandbox::new();
    // Five a page: the 14 fixture Pokémon arrive on three pages (PokeAPI's `next` links).
    let run = s
        .run_env(
            &[
                "--offline",
                "fetch",
                "Pokemon",
                "--follow",
                "--format",
                "json",
            ],
            &[("KYE_POKEAPI__LIST_LIMIT", "5")],
        )
        .expect(65);
    let summary = run.json();
    // 13 Pokémon and the types and abilities they reference.
    let followed = summary["followed"].as_u64().unwrap();
    assert!(followed > 0, "{summary}");
    assert_eq!(summary["counts"]["stored"], 13 + followed, "{summary}");
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["counts"]["rejected"], 1, "{summary}"); // haunter: no base_experience
    assert_eq!(summary["requested"], 14, "{summary}");
    let pokemon = s
        .run(&["show", "Pokemon", "--format", "json"])
        .expect(0)
        .json();
    assert_eq!(pokemon.as_array().unwrap().len(), 13);
    // --follow fetched their types too.
    let types = s
        .run(&["show", "PokemonType", "--format", "json"])
        .expect(0)
        .json();
    assert!(names(&types).contains(&"electric".to_string()), "{types}");

    // `list` names the list function.
    let listing = s.run(&["list", "--format", "json"]).expect(0).json();
    assert_eq!(listing["listers"][0]["function"], "all_pokemon");
    // `get` takes one key, and says so.
    let get = s.run(&["--offline", "get", "Pokemon"]).expect(2);
    assert!(
        get.stderr()
            .contains("asks for every key `all_pokemon` lists: use `fetch`"),
        "{}",
        get.stderr()
    );
}
