//! The directory store beyond the contract: documents with their provenance and key, file
//! names that keep every key inside the directory, JSON lines cut after a torn append,
//! temporary files of interrupted writes removed, and the lock inside the directory.

use std::path::{Path, PathBuf};

use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::write_ok;

const SCHEMA: &str = r#"
Pokemon(id)(name) {
  id: Number
  name: String
  types: PokemonType*
}
PokemonType(name) {
  name: String
  generation: String?
}
Page(path) {
  path: String
  title: String?
}
Day(year, month, day) {
  year: Number
  month: Number
  day: Number
  note: String?
}
"#;

fn open(root: &Path) -> DirStore {
    let mut s = DirStore::open(root).expect("open dir store");
    s.prepare(&kye_lang::compile_str("s.kye", SCHEMA).unwrap_or_else(|e| panic!("{e}")))
        .unwrap();
    s
}

fn record(run: RunId, model: &str, v: Value) -> WriteItem {
    WriteItem::Record(RecordWrite::new(
        model,
        v,
        Provenance::new(run, "test::fetch"),
    ))
}

/// Every file under `root`, as absolute canonical paths.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.canonicalize().unwrap());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn one_document_per_record_with_nested_records_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = open(tmp.path());
    let run = s.begin_run(&NewRun::new("Pokemon.id = 25")).unwrap();
    let v = json!({"id": 25, "name": "pikachu", "types": [{"name": "electric", "generation": "generation-i"}]});
    let res = s
        .write_batch(&[
            record(run, "Pokemon", v.clone()),
            record(
                run,
                "Day",
                json!({"year": 2024, "month": 1, "day": 2, "note": "x"}),
            ),
        ])
        .unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("Pokemon/25.json")).unwrap())
            .unwrap();
    assert_eq!(doc["name"], json!("pikachu"));
    assert_eq!(doc["_kye"]["run"], json!(run.0));
    assert_eq!(doc["_kye"]["hash"], json!(content_hash(&v)));
    assert_eq!(doc["_kye"]["key"], json!({"id": 25}));
    assert!(tmp.path().join("PokemonType/electric.json").is_file());
    assert!(tmp.path().join("Day/2024,1,2.json").is_file());
    assert_eq!(
        s.records(&RecordQuery::new("Pokemon")).unwrap(),
        vec![v.clone()]
    );
    let mut q = RecordQuery::new("Pokemon");
    q.provenance = true;
    assert_eq!(
        s.records(&q).unwrap()[0]["_kye"]["fetcher"],
        json!("test::fetch")
    );
    // Re-storing replaces the document; no temporary files are left behind.
    let mut v2 = v.clone();
    v2["types"] = json!([]);
    s.write_batch(&[record(run, "Pokemon", v2.clone())])
        .unwrap();
    assert_eq!(s.records(&RecordQuery::new("Pokemon")).unwrap(), vec![v2]);
    let names: Vec<String> = walk(tmp.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    // Freshness by primary and secondary index.
    assert!(s
        .last_stored("Pokemon", &IndexKey::single("id", 25.0))
        .unwrap()
        .is_some());
    assert!(s
        .last_stored("Pokemon", &IndexKey::single("name", "pikachu"))
        .unwrap()
        .is_some());
    assert!(s
        .last_stored("Pokemon", &IndexKey::single("id", 26))
        .unwrap()
        .is_none());
    assert!(s
        .last_stored(
            "Day",
            &IndexKey::new(["year", "month", "day"], [2024, 1, 2])
        )
        .unwrap()
        .is_some());
}

#[test]
fn hostile_keys_never_leave_the_directory() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("store");
    let mut s = open(&root);
    let run = s.begin_run(&NewRun::new("Page.path = ...")).unwrap();
    let long = "z".repeat(5000);
    let keys = [
        "../../etc/passwd",
        "../escape",
        "/absolute/path",
        "C:\\windows\\system32",
        "a/b/c",
        "..",
        ".",
        ".hidden",
        "nul\u{0}byte",
        "CON",
        "aux",
        "com1",
        "colon:name",
        "",
        "~",
        "%2e%2e",
        "new\nline",
        long.as_str(),
    ];
    let items: Vec<WriteItem> = keys
        .iter()
        .map(|k| {
            record(
                run,
                "Page",
                json!({"path": k, "title": format!("title of {k:?}")}),
            )
        })
        .collect();
    let res = s.write_batch(&items).unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let root_canon = root.canonicalize().unwrap();
    let files = walk(&root);
    for f in &files {
        assert!(
            f.starts_with(&root_canon),
            "{} escaped {}",
            f.display(),
            root_canon.display()
        );
    }
    // Nothing was written next to the store.
    assert_eq!(std::fs::read_dir(outer.path()).unwrap().count(), 1);
    let pages: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.parent().unwrap().ends_with("Page"))
        .cloned()
        .collect();
    assert_eq!(pages.len(), keys.len(), "{pages:?}");
    for p in &pages {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(!name.starts_with('.'), "{name}");
        assert!(name.len() <= 205, "{name}");
    }
    // Every record reads back, and every short key decodes from its file name.
    let got = s.records(&RecordQuery::new("Page")).unwrap();
    let mut got_keys: Vec<String> = got
        .iter()
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    got_keys.sort();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(got_keys, want);
    for k in &keys[..keys.len() - 1] {
        let name = encode_file_name(&[k]);
        assert!(
            root.join("Page").join(format!("{name}.json")).is_file(),
            "{k:?}"
        );
        assert_eq!(decode_file_name(&name), Some(vec![k.to_string()]));
        let f = Filter {
            edge: "path".into(),
            value: json!(k),
        };
        assert_eq!(
            s.records(&RecordQuery::new("Page").filter(f))
                .unwrap()
                .len(),
            1,
            "{k:?}"
        );
        assert!(
            s.last_stored("Page", &IndexKey::single("path", *k))
                .unwrap()
                .is_some(),
            "{k:?}"
        );
    }
}

#[test]
fn runs_rejects_drift_and_outcomes_as_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let r1;
    {
        let mut s = open(tmp.path());
        r1 = s.begin_run(&NewRun::new("Pokemon.id in 1..=2")).unwrap();
        let t = Timestamp::from_unix_millis(1_800_000_000_000);
        let items = vec![
            WriteItem::Reject(RejectWrite {
                run: r1,
                model: "Pokemon".into(),
                key: Some(IndexKey::single("id", 1)),
                fetcher: "f".into(),
                payload: json!({"id": 1, "name": null}),
                errors: json!([{"kind": "MissingValue", "edges": ["name"]}]),
                reason: "name: missing".into(),
                at: t,
            }),
            WriteItem::Drift(DriftWrite {
                run: r1,
                model: "Pokemon".into(),
                path: "sprites[3].url".into(),
                example: json!("http://x"),
                seen_at: t,
            }),
            WriteItem::Drift(DriftWrite {
                run: r1,
                model: "Pokemon".into(),
                path: "sprites[4].url".into(),
                example: json!("http://y"),
                seen_at: t,
            }),
            WriteItem::KeyOutcome(KeyOutcomeWrite {
                run: r1,
                model: "Pokemon".into(),
                key: IndexKey::single("id", 1),
                status: KeyStatus::Rejected,
                reason: None,
                at: t,
            }),
            WriteItem::KeyOutcome(KeyOutcomeWrite {
                run: r1,
                model: "Pokemon".into(),
                key: IndexKey::single("id", 2),
                status: KeyStatus::Missing,
                reason: Some("404".into()),
                at: t,
            }),
        ];
        assert!(s.write_batch(&items).unwrap().iter().all(Result::is_ok));
        // Killed mid-append: a torn line at the end of keys.jsonl.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join("_kye/keys.jsonl"))
            .unwrap();
        f.write_all(br#"{"run":1,"model":"Pokemon","key":"{\"id\":3}","sta"#)
            .unwrap();
    }
    let mut s = open(tmp.path());
    let runs = s.runs(None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    assert_eq!((runs[0].counts.rejected, runs[0].counts.missing), (1, 1));
    let r2 = s.begin_run(&NewRun::new("again")).unwrap();
    assert_eq!(r2, RunId(r1.0 + 1));
    s.write_batch(&[WriteItem::KeyOutcome(KeyOutcomeWrite {
        run: r2,
        model: "Pokemon".into(),
        key: IndexKey::single("id", 3),
        status: KeyStatus::Stored,
        reason: None,
        at: Timestamp::now(),
    })])
    .unwrap();
    s.finish_run(r2, &RunEnd::new(RunStatus::Completed, RunCounts::default()))
        .unwrap();
    // Every line of every file parses: the torn line was cut before appending.
    for f in ["runs.jsonl", "rejects.jsonl", "drift.jsonl", "keys.jsonl"] {
        let text = std::fs::read_to_string(tmp.path().join("_kye").join(f)).unwrap();
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{f}: {line}: {e}"));
        }
        assert!(text.ends_with('\n'), "{f}");
    }
    drop(s);
    let s = DirReader::open(tmp.path()).unwrap();
    let rejects = s.rejects(Some(r1), None).unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].payload, json!({"id": 1, "name": null}));
    let drift = s.drift().unwrap();
    assert_eq!(
        (drift.len(), drift[0].path.as_str(), drift[0].count),
        (1, "sprites[].url", 2)
    );
    assert_eq!(
        s.latest_outcome("Pokemon", &IndexKey::single("id", 3))
            .unwrap()
            .unwrap()
            .status,
        KeyStatus::Stored
    );
    assert_eq!(
        s.latest_outcome("Pokemon", &IndexKey::single("id", 2))
            .unwrap()
            .unwrap()
            .reason
            .as_deref(),
        Some("404")
    );
    assert_eq!(s.runs(None).unwrap()[0].status, RunStatus::Completed);
}

/// Reopening for writing removes the temporary files a writer killed mid-write left behind.
#[test]
fn temporary_files_of_interrupted_writes_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("out");
    let mut s = open(&root);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        &mut s,
        &[record(run, "Pokemon", json!({"id": 7, "name": "squirtle"}))],
    );
    drop(s);
    let stale = [
        root.join("Pokemon/.7.json.tmp-99999-0"),
        root.join("_kye/.runs.jsonl.tmp-99999-1"),
    ];
    for f in &stale {
        std::fs::write(f, b"{\"id\": 7, \"na").unwrap();
    }
    // Readers ignore them.
    let r = DirReader::open(&root).unwrap();
    assert_eq!(r.records(&RecordQuery::new("Pokemon")).unwrap().len(), 1);
    drop(r);
    drop(open(&root));
    for f in &stale {
        assert!(!f.exists(), "{} left", f.display());
    }
    assert!(root.join("Pokemon/7.json").is_file());
}

/// The lock lives inside the directory: any path to it, a symbolic link included, reaches the
/// same lock; the lock file is empty once its writer has ended.
#[test]
fn the_lock_is_inside_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let writer = DirStore::open(&out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("_kye/lock"))
            .unwrap()
            .trim(),
        std::process::id().to_string()
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&out, tmp.path().join("out-link")).unwrap();
        assert!(matches!(
            DirStore::open(tmp.path().join("out-link")),
            Err(StoreError::Locked { .. })
        ));
    }
    drop(writer);
    assert_eq!(std::fs::read_to_string(out.join("_kye/lock")).unwrap(), "");
}
