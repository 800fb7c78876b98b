//! Scale: a key range streams through fetch → validate → store without materialising keys or
//! results. `scale_report` (ignored; run it by name) prints peak RSS per key count, each
//! count measured in a fresh child process:
//!
//! ```text
//! cargo test -p kye-runtime --release --test integration -- --ignored --nocapture scale_report
//! ```

use std::sync::OnceLock;
use std::time::Instant;

use kye_lang::Schema;
use kye_runtime::store::RecordQuery;
use kye_runtime::testing::FetcherBuilder;
use kye_runtime::Context;
use kye_runtime::Runtime;
use kye_runtime::{FetchFuture, Key, KeyValue};
use kye_runtime::{FetcherRegistration, RegisteredModel, Registry};
use serde_json::json;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        kye_lang::compile_str(
            "scale.kye",
            "Item(id: Number)(name) { name: String  weight: Number  tags*: String }",
        )
        .expect("compiles")
    })
}

/// A fetcher with a ready value (no network): measures kye's own cost per key.
fn item_by_id(key: &Key, _ctx: Context) -> FetchFuture {
    let id = match key.values().first() {
        Some(KeyValue::Int(i)) => *i,
        _ => 0,
    };
    Box::pin(async move {
        Ok(Some(json!({
            "id": id,
            "name": format!("item-{id}"),
            "weight": (id % 97) as f64 * 1.5,
            "tags": ["a", "b"],
        })))
    })
}

static ITEM_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Item", &["id"], "item_by_id", item_by_id).build();

fn runtime(db: &std::path::Path) -> Runtime {
    Runtime::builder()
        .registry(
            Registry::from_parts(
                [RegisteredModel::new(schema(), "Item").unwrap()],
                [&ITEM_BY_ID],
            )
            .unwrap(),
        )
        .config(kye_runtime::Config::empty())
        .env(Vec::new())
        .store(format!("sqlite:{}", db.display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_keys_is_stored_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(&dir.path().join("kye.db"));
    let summary = rt.fetch("Item.id in 1..=3000").await.unwrap();
    assert!(summary.is_clean(), "{summary}");
    assert_eq!(summary.counts.stored, 3000);
    let n = rt.with_store(|s| {
        s.records(&RecordQuery::new("Item").limit(10_000))
            .unwrap()
            .len()
    });
    assert_eq!(n, 3000);
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Child side of `scale_report`: fetches `KYE_SCALE_N` keys and prints one line.
#[test]
#[ignore = "child process helper"]
fn scale_child() {
    let Ok(n) = std::env::var("KYE_SCALE_N") else {
        return;
    };
    let n: u64 = n.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // KYE_SCALE_THREADS=1: a current-thread tokio runtime (the writer keeps its own thread).
    let threads: usize = std::env::var("KYE_SCALE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    };
    let before = peak_rss_kib();
    let start = Instant::now();
    let summary = rt.block_on(async {
        runtime(&dir.path().join("kye.db"))
            .fetch(format!("Item.id in 1..={n}"))
            .await
            .unwrap()
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(summary.counts.stored, n);
    println!(
        "SCALE keys={n} threads={threads} stored={} secs={secs:.2} store_secs={:.2} keys_per_sec={:.0} us_per_key={:.1} peak_rss_kib={} rss_before_kib={before}",
        summary.counts.stored,
        summary.store_time.as_secs_f64(),
        n as f64 / secs,
        secs * 1e6 / n as f64,
        peak_rss_kib()
    );
}

#[test]
#[ignore = "a benchmark: prints figures, run by name"]
fn scale_report() {
    let counts: Vec<u64> = std::env::var("KYE_SCALE_COUNTS")
        .unwrap_or_else(|_| "10000,100000".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for n in counts {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                crate::common::test_name(module_path!(), "scale_child").as_str(),
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KYE_SCALE_N", n.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.find("SCALE keys").map(|i| &l[i..]))
            .unwrap_or("SCALE (child printed nothing)");
        println!("{line}");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
