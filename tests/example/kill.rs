//! kill -9 the Pokémon example (`cargo run --example pokemon`) in the middle of a large fetch,
//! three times at seeded random points, then run it to the end: every Pokémon is stored exactly
//! once, and `runs` tells the story (killed runs `interrupted`, each resuming the one before,
//! the last `completed` with the earlier runs' keys skipped).
//!
//! The example fetches from a loopback PokeAPI serving thousands of synthetic Pokémon
//! (`examples/pokemon/synthetic.rs`, built from the example's fixtures) through
//! `POKEAPI_BASE_URL`. The same scenario with a bare `Runtime` and SQLite-level checks is in
//! `kye-runtime/tests/integration/reliability_kill.rs`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kye::testing::{Fixtures, TestServer};
use serde_json::Value;

const KEYS: u32 = 4_000;

use crate::{support, synthetic};

fn example(dir: &Path, base: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(support::example_binary());
    cmd.arg("--db")
        .arg(dir.join("pokemon.db"))
        .args(args)
        .current_dir(dir)
        .env("POKEAPI_BASE_URL", base)
        .env_remove("KYE_POKEAPI__BASE_URL")
        .env_remove("KYE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn json_of(mut cmd: Command) -> Value {
    let out = cmd.output().expect("run the example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// The newest run's id and its live `stored` count (`runs` reads the running run's outcomes:
/// cheap enough to poll).
/// A transformer's run (`transform pokemon_card`), recorded after a completed fetch.
pub(crate) fn is_transform(run: &Value) -> bool {
    run["request"]
        .as_str()
        .is_some_and(|r| r.starts_with("transform "))
}

fn newest_run(dir: &Path, base: &str) -> Option<(i64, i64)> {
    if !dir.join("pokemon.db").exists() {
        return None;
    }
    let out = example(dir, base, &["runs", "--format", "json"])
        .output()
        .ok()?;
    let runs: Value = serde_json::from_slice(&out.stdout).ok()?;
    runs.as_array()?
        .iter()
        .filter(|r| !is_transform(r))
        .filter_map(|r| Some((r["id"].as_i64()?, r["counts"]["stored"].as_i64()?)))
        .max()
}

fn stored(dir: &Path, base: &str) -> Vec<i64> {
    if !dir.join("pokemon.db").exists() {
        return Vec::new();
    }
    let out = example(
        dir,
        base,
        &["show", "Pokemon", "--format", "json", "--limit", "100000"],
    )
    .output()
    .expect("run show");
    // Before the first write the table may not exist yet.
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect()
}

#[test]
fn kill_the_example_three_times_then_finish() {
    let t0 = Instant::now();
    support::example_binary();
    eprintln!("example binary ready in {:.1?}", t0.elapsed());
    let fixtures =
        Fixtures::from_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures"))
            .unwrap();
    let routes = synthetic::Synthetic::new(&fixtures, synthetic::Sizes::About(4_000))
        .expect("templates")
        .routes(&fixtures, KEYS);
    let server = TestServer::start_on_thread(routes).unwrap();
    let base = server.base_url().to_string();
    let dir = tempfile::tempdir().unwrap();
    let request = format!("Pokemon.id in 1..={KEYS}");
    let fetch = ["fetch", request.as_str()];
    let mut rng_state: u64 = std::env::var("KYE_REL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let mut next_pause = || {
        // xorshift: a reproducible pause between 20 and 200 ms.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        Duration::from_millis(20 + rng_state % 180)
    };

    let mut stored_after_kill = Vec::new();
    for round in 0..3 {
        let previous_run = newest_run(dir.path(), &base).map_or(0, |(id, _)| id);
        let mut child = example(dir.path(), &base, &fetch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Let it make progress of its own (the first round only needs to have started).
        let deadline = Instant::now() + Duration::from_secs(60);
        while round > 0
            && !newest_run(dir.path(), &base)
                .is_some_and(|(id, stored)| id > previous_run && stored >= 100)
        {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: ended early"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(next_pause());
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the example finished before the kill; make the fetch longer"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let ids = stored(dir.path(), &base);
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "round {round}: a Pokémon twice");
        stored_after_kill.push(ids.len());
        eprintln!("round {round} killed at {:.1?}", t0.elapsed());
    }
    assert!(
        stored_after_kill.windows(2).all(|w| w[0] <= w[1]),
        "{stored_after_kill:?}"
    );
    assert!(
        (*stored_after_kill.last().unwrap() as u32) < KEYS,
        "{stored_after_kill:?}"
    );

    // To the end. Exit 65: the fixtures hold real Pokémon whose base_experience is null,
    // quarantined, not stored.
    let out = example(dir.path(), &base, &fetch).output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 65)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = stored(dir.path(), &base);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "each Pokémon exactly once");

    let runs = json_of(example(dir.path(), &base, &["runs", "--format", "json"]));
    // The fetch runs (the cards transformed after the last one are a run of their own).
    let mut runs: Vec<Value> = runs.as_array().cloned().expect("a list of runs");
    runs.retain(|r| !is_transform(r));
    runs.sort_by_key(|r| r["id"].as_i64());
    let last = runs.last().unwrap();
    assert_eq!(last["status"], "completed", "{runs:#?}");
    for r in &runs[..runs.len() - 1] {
        assert_eq!(r["status"], "interrupted", "{runs:#?}");
    }
    assert!(runs.len() >= 3, "one run per started process: {runs:#?}");
    for pair in runs.windows(2) {
        assert_eq!(pair[1]["resumed_from"], pair[0]["id"], "{runs:#?}");
    }
    let c = &last["counts"];
    let total: i64 = ["stored", "rejected", "missing", "failed", "skipped"]
        .iter()
        .map(|k| c[k].as_i64().unwrap())
        .sum();
    assert_eq!(total, i64::from(KEYS), "every key accounted for: {c}");
    let rejected = c["rejected"].as_i64().unwrap();
    assert_eq!(c["failed"], 0, "{c}");
    assert_eq!(c["missing"], 0, "{c}");
    // Every key is stored except the quarantined ones, each judged once across the runs
    // (a done key is skipped by the runs after it).
    let quarantined: i64 = runs
        .iter()
        .map(|r| r["counts"]["rejected"].as_i64().unwrap())
        .sum();
    assert!(quarantined >= rejected);
    assert_eq!(
        ids.len() as i64 + quarantined,
        i64::from(KEYS),
        "stored + quarantined = requested: {runs:#?}"
    );
    println!(
        "RELIABILITY example kill: keys={KEYS} kills=3 stored_after_each_kill={stored_after_kill:?} runs={} final_stored={} quarantined={quarantined} duplicates=0",
        runs.len(),
        ids.len()
    );
}
