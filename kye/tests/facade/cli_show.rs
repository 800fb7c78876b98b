//! `kye show` as a program (the standalone binary, which links no models).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kye::store::{NewRun, Provenance, RecordWrite, SqliteStore, StoreWrite, WriteItem};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kye-cli-show-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A store of `n` `Cat` records (`id`, `name`, `age`, `notes` of `note_len` characters).
fn cats(db: &std::path::Path, n: u64, note_len: usize) {
    let schema = kye_lang::compile_str(
        "cats.kye",
        "Cat(id) {\n  id: Number\n  name: String\n  age: Number\n  notes: String\n}\n",
    )
    .expect("schema");
    let mut s = SqliteStore::open(db).expect("store");
    s.prepare(&schema).expect("prepare");
    let run = s.begin_run(&NewRun::new("Cat.id in ..")).expect("run");
    let notes = "n".repeat(note_len);
    let ids: Vec<u64> = (1..=n).collect();
    for chunk in ids.chunks(1000) {
        let items: Vec<WriteItem> = chunk
            .iter()
            .map(|&id| {
                WriteItem::Record(RecordWrite::new(
                    "Cat",
                    serde_json::json!({"id": id, "name": format!("cat{id}"), "age": id % 20, "notes": notes}),
                    Provenance::new(run, "get_cat"),
                ))
            })
            .collect();
        let res = s.write_batch(&items).expect("batch");
        assert!(res.iter().all(Result::is_ok), "{res:?}");
    }
}

#[test]
fn standalone_show_prints_columns_in_schema_order() {
    let d = dir("order");
    let db = d.join("cats.db");
    cats(&db, 2, 3);
    for (format, header) in [
        ("text", "id  name  age  notes"),
        ("markdown", "| id | name | age | notes |"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kye"))
            .args([
                "--db",
                db.to_str().unwrap(),
                "--format",
                format,
                "show",
                "Cat",
            ])
            .env("NO_COLOR", "1")
            .output()
            .expect("kye runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.lines().next(), Some(header), "{text}");
        assert!(text.contains("cat2"), "{text}");
    }
}

/// The peak resident memory of a running process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// 10,000 records of 6 KB each (about 60 MB of text): `show` prints the first ones while it
/// holds a few of them in memory. The reader blocks once the pipe is full, so the peak it
/// reached by then is what streaming costs; collecting every record first costs well over
/// 60 MB before the first line.
#[cfg(target_os = "linux")]
#[test]
fn show_streams_in_constant_memory() {
    let d = dir("stream");
    let db = d.join("cats.db");
    cats(&db, 10_000, 6000);
    for format in ["json", "markdown", "text"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kye"))
            .args([
                "--db",
                db.to_str().unwrap(),
                "--format",
                format,
                "show",
                "Cat",
            ])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kye runs");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = vec![0u8; 4096];
        stdout.read_exact(&mut first).expect("output");
        // The child fills the pipe and blocks; give it a moment to get there.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let peak = peak_kib(child.id());
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).expect("the rest");
        let status = child.wait().expect("exit");
        assert!(status.success(), "{format}: {status}");
        assert!(
            peak < 40 * 1024,
            "{format}: kye show peaked at {peak} KiB before its output was read"
        );
        let all = [first, rest].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.contains("cat10000"),
            "{format}: the last record is printed"
        );
        if format == "json" {
            let doc: serde_json::Value = serde_json::from_slice(&all).expect("one JSON document");
            assert_eq!(doc.as_array().map(Vec::len), Some(10_000));
            assert_eq!(doc[0]["name"], "cat1");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}
