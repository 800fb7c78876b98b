//! Two kye processes fetching into the same SQLite file at once: either both succeed without
//! corruption, or the second refuses with a clear message (naming the file and the holder's
//! pid) and succeeds when run again; the file passes SQLite's integrity check and holds every
//! key of both requests exactly once. Meanwhile a reader sees consistent data.

use crate::common;

use std::time::{Duration, Instant};

use kye_runtime::store::{open_store_read_only, RecordQuery, StoreSpec};
use kye_runtime::testing::TestServer;

const KEYS: i64 = 600;

/// Child side: one fetch into the shared file; prints `REFUSED <message>` and exits 3 if the
/// store cannot be opened or the run fails.
#[test]
#[ignore = "child process helper"]
fn concurrent_child() {
    let (Ok(base), Ok(db), Ok(range)) = (
        std::env::var("KYE_REL_CONC_BASE"),
        std::env::var("KYE_REL_CONC_DB"),
        std::env::var("KYE_REL_CONC_RANGE"),
    ) else {
        return;
    };
    let rt = common::child_tokio();
    let result = rt.block_on(async {
        let kye = common::runtime(&base, db.as_ref(), 8)?;
        kye.fetch(format!("Pokemon.id in {range}")).await
    });
    match result {
        Ok(summary) => println!("CHILD DONE {summary}"),
        Err(e) => {
            println!("REFUSED {e}");
            std::process::exit(3);
        }
    }
}

#[test]
fn two_processes_on_one_sqlite_file() {
    let server = TestServer::start_on_thread(common::slow_pokemon_routes(KEYS)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let env = |range: &str| {
        [
            ("KYE_REL_CONC_BASE", server.base_url().to_string()),
            ("KYE_REL_CONC_DB", db.display().to_string()),
            ("KYE_REL_CONC_RANGE", range.to_string()),
        ]
    };
    let ranges = ["1..=400", "201..=600"];
    let a = common::spawn_self(
        &common::test_name(module_path!(), "concurrent_child"),
        &env(ranges[0]),
    );
    let b = common::spawn_self(
        &common::test_name(module_path!(), "concurrent_child"),
        &env(ranges[1]),
    );
    let pids = [a.id(), b.id()];

    // A reader while they run: reads fail only until the file and its tables exist, then
    // always succeed, and never show a key twice. Twenty reads that see records are required
    // (after the writers finish, the records stay readable, so this ends).
    let spec: StoreSpec = format!("sqlite:{}", db.display()).parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads_with_records = 0;
    while reads_with_records < 20 {
        assert!(
            Instant::now() < deadline,
            "the reader saw records {reads_with_records} times in 60 s"
        );
        let read = open_store_read_only(&spec)
            .and_then(|store| store.records(&RecordQuery::new("Pokemon").limit(10_000)));
        match read {
            Ok(records) => {
                let mut ids: Vec<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
                let n = ids.len();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), n, "a reader saw a key twice");
                if n > 0 {
                    reads_with_records += 1;
                }
            }
            Err(e) => assert_eq!(
                reads_with_records, 0,
                "a read failed after records were readable: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(25));
    }

    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut refused = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            assert!(stdout.contains("CHILD DONE"), "{stdout}");
            continue;
        }
        assert_eq!(
            out.status.code(),
            Some(3),
            "crashed, not refused: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.find("REFUSED ").map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("no REFUSED line: {stdout}"));
        // Clear: which file, that another process holds it (which one), what to do.
        assert!(line.contains(&db.display().to_string()), "{line}");
        assert!(line.contains("another kye process"), "{line}");
        assert!(
            line.contains("wait for it to finish"),
            "says what to do: {line}"
        );
        let other = pids[1 - i];
        assert!(
            line.contains(&format!("pid {other}")),
            "names the holder {other}: {line}"
        );
        refused.push((i, line));
    }
    assert!(refused.len() < 2, "both refused: {refused:?}");

    // The refused one runs again, alone, and completes.
    for (i, _) in &refused {
        let out = common::spawn_self(
            &common::test_name(module_path!(), "concurrent_child"),
            &env(ranges[*i]),
        )
        .wait_with_output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    let (rows, distinct, children, check) = common::sqlite_facts(&db);
    assert_eq!(check, "ok");
    assert_eq!(
        (rows, distinct),
        (KEYS, KEYS),
        "every key of both requests, once"
    );
    assert_eq!(children, common::expected_children(1..=KEYS));
    println!(
        "RELIABILITY concurrent: two processes, one file: refused={} ({}), final_rows={rows}, integrity=ok",
        refused.len(),
        refused.first().map_or("both succeeded".to_string(), |(_, l)| l.clone())
    );
}
