//! Crash safety with real processes: a child process (this test binary, run again for its
//! ignored `crash_child`) writes batches as fast as it can and is killed with SIGKILL at
//! random moments. After each kill the store reopens consistent: every record wholly old or
//! wholly new, every "stored" outcome backed by its record, the dead run interrupted. While
//! the child runs, a second writer is refused naming the child's pid and readers work.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::fixtures::{schema, Store};
use crate::harness::Harness;

const SCHEMA: &str = "Item(id) {\n id: Number\n version: Number\n tags: Number+\n}\n";
const KEYS: u64 = 50;

/// The record for `id` written in round `v`: its tags are `v` repeated `v % 5 + 1` times, so a
/// record whose child rows were half replaced shows as a count or a value that does not match.
fn item(id: u64, v: u64) -> Value {
    json!({"id": id, "version": v, "tags": vec![v; (v % 5 + 1) as usize]})
}

/// The child's side (see `crash_child` in main.rs): opens the store at `spec`, signals
/// `ready` after its first batch, then writes until it is killed.
pub fn child(spec: &str, ready: &Path, round: u64) -> ! {
    let spec: StoreSpec = spec.parse().expect("store spec");
    let mut store = open_store(&spec).expect("open store");
    store.prepare(&schema(SCHEMA)).expect("prepare");
    let run = store
        .begin_run(&NewRun::new("Item.id in 0..50"))
        .expect("begin run");
    let start = round * 1_000_000;
    let mut v = start;
    loop {
        let mut items = Vec::new();
        for i in 0..10 {
            let id = (v * 7 + i) % KEYS;
            items.push(WriteItem::Record(RecordWrite::new(
                "Item",
                item(id, v),
                Provenance::new(run, "crash"),
            )));
            items.push(WriteItem::KeyOutcome(KeyOutcomeWrite {
                run,
                model: "Item".into(),
                key: IndexKey::single("id", id),
                status: KeyStatus::Stored,
                reason: None,
                at: Timestamp::now(),
            }));
        }
        let res = store.write_batch(&items).expect("batch");
        assert!(res.iter().all(Result::is_ok), "{res:?}");
        if v == start {
            std::fs::write(ready, std::process::id().to_string()).expect("ready file");
        }
        v += 1;
    }
}

fn spawn_child(spec: &StoreSpec, ready: &Path, round: u64) -> Child {
    let _ = std::fs::remove_file(ready);
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KYE_CRASH_STORE", spec.to_string())
        .env("KYE_CRASH_READY", ready)
        .env("KYE_CRASH_ROUND", round.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

fn wait_ready(child: &mut Child, ready: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("child exited early: {status}");
        }
        assert!(Instant::now() < deadline, "child did not start writing");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pseudo-random pause so the kill lands at different points of the write loop.
fn random_pause(round: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos() as u64;
    Duration::from_millis((nanos ^ (round * 7919)) % 120 + 5)
}

/// Every stored item is whole; every "stored" outcome has its record. Returns the count.
fn check_consistent(store: &dyn StoreRead) -> usize {
    let records = store.records(&RecordQuery::new("Item")).unwrap();
    for r in &records {
        let v = r["version"].as_u64().unwrap();
        assert_eq!(
            r["tags"],
            json!(vec![v; (v % 5 + 1) as usize]),
            "half-written record: {r}"
        );
    }
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    let stored: Vec<u64> = (0..KEYS)
        .filter(|&id| {
            store
                .latest_outcome("Item", &IndexKey::single("id", id))
                .unwrap()
                .is_some_and(|o| o.status == KeyStatus::Stored)
        })
        .collect();
    let missing: Vec<&u64> = stored.iter().filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "outcomes say stored but these Items are missing: {missing:?}"
    );
    // The child's first batch (10 keys) was committed before it said it was ready.
    assert!(stored.len() >= 10, "{stored:?}");
    records.len()
}

pub fn survives_sigkill_mid_batch(h: &Harness) {
    let st = Store::new(h);
    let ready =
        std::env::temp_dir().join(format!("kye-crash-ready-{}-{}", h.kind, std::process::id()));
    for round in 1..=4u64 {
        let mut child = spawn_child(&st.spec, &ready, round);
        wait_ready(&mut child, &ready);
        if round == 1 {
            match h.differs.writers {
                crate::harness::Writers::One => {
                    let err = open_store(&st.spec)
                        .err()
                        .expect("a second writer is refused");
                    assert!(
                        matches!(&err, StoreError::Locked { holder, .. } if *holder == format!(" (pid {})", child.id())),
                        "{err:?}"
                    );
                }
                // A second writer opens alongside, and does not take the child's live run
                // for a dead one.
                crate::harness::Writers::Many => drop(st.writer()),
            }
            let reader = st.reader();
            assert!(!reader
                .records(&RecordQuery::new("Item"))
                .unwrap()
                .is_empty());
            assert_eq!(reader.runs(None).unwrap()[0].status, RunStatus::Running);
        }
        std::thread::sleep(random_pause(round));
        child.kill().expect("kill"); // SIGKILL on Unix
        child.wait().expect("wait");
        let store = st.writer();
        assert!(check_consistent(store.as_ref()) > 0);
        let runs = store.runs(None).unwrap();
        assert_eq!(runs.len(), round as usize);
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Interrupted),
            "{runs:?}"
        );
        assert!(runs[0].counts.stored > 0, "{runs:?}");
    }
    let _ = std::fs::remove_file(&ready);
    (h.after_crash)(&st.spec);
}
