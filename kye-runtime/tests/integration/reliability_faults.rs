//! Reliability under a hostile server: 20% of all requests (seeded) answer 500/503, 429 with
//! `Retry-After`, stall past the timeout, close mid-body, send truncated JSON, an HTML page or
//! a body over the size limit, on top of keys the source lacks (404), invalid documents and
//! keys that always fail. Every key must end in exactly the outcome the server's own record of
//! what it did predicts, the counts must add up, failures must carry a reason, quarantined
//! payloads must be kept, and no valid record may be lost or altered.
//!
//! Complements `runtime_pipeline.rs::twenty_percent_faults_every_key_accounted_for_and_nothing_lost`
//! (which has only stored/failed keys) with all four outcomes at once. Prints a `RELIABILITY`
//! line quoted in bench/README.md.

use crate::common;

use std::time::Duration;

use kye_runtime::store::{IndexKey, KeyStatus, RecordQuery, RunStatus};
use kye_runtime::testing::{Chaos, Fault, Route, Routes, TestServer};
use serde_json::{json, Value};

const KEYS: i64 = 300;
const HUGE: Fault = Fault::HugeBody { bytes: 200_000 };

/// What the server holds for a key, before any injected fault.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Plan {
    Valid,
    /// No route: 404.
    Absent,
    /// A document that fails validation (weight is text, or not > 0).
    Invalid,
    /// 500 on every request: retried, then failed.
    AlwaysDown,
    /// 403: permanent, failed at once.
    Forbidden,
}

fn plan(id: i64) -> Plan {
    match id {
        _ if id % 10 == 3 => Plan::Absent,
        _ if id % 15 == 7 => Plan::Invalid,
        _ if id % 50 == 11 => Plan::AlwaysDown,
        _ if id % 60 == 29 => Plan::Forbidden,
        _ => Plan::Valid,
    }
}

fn routes() -> Routes {
    let mut routes = Routes::new();
    for id in 1..=KEYS {
        let path = format!("/pokemon/{id}/");
        let route = match plan(id) {
            Plan::Valid => Route::json(common::doc(id).to_string()),
            Plan::Absent => continue,
            Plan::Invalid => {
                let mut d = common::doc(id);
                d["weight"] = if id % 2 == 0 {
                    json!("very heavy")
                } else {
                    json!(-1)
                };
                Route::json(d.to_string())
            }
            Plan::AlwaysDown => Route::json(common::doc(id).to_string()).always(Fault::Status(500)),
            Plan::Forbidden => Route::text(403, "forbidden: key revoked"),
        };
        routes.insert(path, route);
    }
    let chaos = Chaos::new(6, 0.2)
        .fault(Fault::Status(500), 2)
        .fault(Fault::Status(503), 1)
        .fault(
            Fault::RateLimited {
                retry_after_secs: 1,
            },
            1,
        )
        .fault(Fault::Stall(Duration::from_secs(1)), 1)
        .fault(Fault::CloseMidBody, 2)
        .fault(Fault::TruncatedJson, 2)
        .fault(Fault::NotJson, 2)
        .fault(HUGE, 1)
        // With 4 attempts, at most 2 injected faults per key leave room to get through.
        .max_faults_per_path(2);
    routes.chaos(chaos)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_faults_every_key_in_its_predicted_outcome_nothing_lost() {
    let server = TestServer::start(routes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kye.db");
    let rt = common::runtime(server.base_url(), &db, 16).unwrap();
    let summary = rt.fetch(format!("Pokemon.id in 1..={KEYS}")).await.unwrap();
    let c = summary.counts;
    assert_eq!(summary.status, RunStatus::Completed, "{summary}");
    assert_eq!(
        c.total(),
        KEYS as u64,
        "every key has one outcome: {summary}"
    );
    assert_eq!(c.skipped, 0);

    let stats = server.stats();
    let injected = stats.faulted();
    assert!(
        injected as f64 >= 0.1 * stats.requests() as f64,
        "the chaos injected too little: {injected} of {} requests",
        stats.requests()
    );

    let records: std::collections::HashMap<i64, Value> = rt
        .with_store(|s| s.records(&RecordQuery::new("Pokemon").limit(10_000)))
        .unwrap()
        .into_iter()
        .map(|r| (r["id"].as_i64().expect("integer id"), r))
        .collect();
    assert_eq!(
        records.len() as u64,
        c.stored,
        "the store holds the stored keys only"
    );
    let mut expected_counts = [0u64; 4]; // stored, rejected, missing, failed
    let mut lost = 0;
    for id in 1..=KEYS {
        let path = format!("/pokemon/{id}/");
        let faults = server.faults(&path);
        let expected = if faults.contains_key(&HUGE) {
            // Over max_body_size: permanent, whatever the route held.
            KeyStatus::Failed
        } else {
            match plan(id) {
                Plan::Valid => KeyStatus::Stored,
                Plan::Absent => KeyStatus::Missing,
                Plan::Invalid => KeyStatus::Rejected,
                Plan::AlwaysDown | Plan::Forbidden => KeyStatus::Failed,
            }
        };
        expected_counts[match expected {
            KeyStatus::Stored => 0,
            KeyStatus::Rejected => 1,
            KeyStatus::Missing => 2,
            _ => 3,
        }] += 1;
        let outcome = rt
            .with_store(|s| s.latest_outcome("Pokemon", &IndexKey::single("id", json!(id))))
            .unwrap()
            .unwrap_or_else(|| panic!("key {id} has no outcome"));
        assert_eq!(
            outcome.status,
            expected,
            "key {id} ({:?}), faults {faults:?}, reason {:?}",
            plan(id),
            outcome.reason
        );
        match expected {
            KeyStatus::Failed => {
                let reason = outcome.reason.unwrap_or_default();
                let names_cause = if faults.contains_key(&HUGE) {
                    reason.contains("limit") || reason.contains("large")
                } else if plan(id) == Plan::Forbidden {
                    reason.contains("403")
                } else {
                    reason.contains("500")
                };
                assert!(
                    names_cause,
                    "key {id}: the reason names the cause: {reason:?}"
                );
            }
            KeyStatus::Stored => {
                let got = records.get(&id);
                if !got.is_some_and(|r| same_record(r, &common::expected_record(id))) {
                    lost += 1;
                    eprintln!("key {id}: stored {got:?}");
                }
            }
            _ => {}
        }
    }
    assert_eq!(lost, 0, "valid records lost or altered");
    assert_eq!(
        [c.stored, c.rejected, c.missing, c.failed],
        expected_counts,
        "{summary}"
    );

    // Quarantined payloads are kept raw, with their errors, one per rejected key.
    let rejects = rt.with_store(|s| s.rejects(Some(summary.run), Some(1000)).unwrap());
    assert_eq!(rejects.len() as u64, c.rejected);
    for r in &rejects {
        let id = r.payload["id"].as_i64().expect("payload kept");
        assert_eq!(plan(id), Plan::Invalid, "{r:?}");
        assert!(r.errors.as_array().is_some_and(|e| !e.is_empty()), "{r:?}");
        assert!(
            r.reason.contains("weight"),
            "the reason names the edge: {}",
            r.reason
        );
    }
    // The store holds exactly the stored keys, each once, with their child rows.
    let stored_ids: Vec<i64> = (1..=KEYS)
        .filter(|&id| {
            rt.with_store(|s| s.latest_outcome("Pokemon", &IndexKey::single("id", json!(id))))
                .unwrap()
                .is_some_and(|o| o.status == KeyStatus::Stored)
        })
        .collect();
    drop(rt);
    let (rows, distinct, children, check) = common::sqlite_facts(&db);
    assert_eq!((rows, distinct), (c.stored as i64, c.stored as i64));
    assert_eq!(children, common::expected_children(stored_ids.into_iter()));
    assert_eq!(check, "ok");

    let by_kind = stats.faults();
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(f, n)| match f {
            Fault::Status(code) => format!("http_{code}={n}"),
            f => format!("{}={n}", f.kind()),
        })
        .collect();
    println!(
        "RELIABILITY faults: keys={KEYS} requests={} faults_injected={injected} ({}) stored={} rejected={} missing={} failed={} lost={lost} retries={} secs={:.2}",
        stats.requests(),
        kinds.join(","),
        c.stored,
        c.rejected,
        c.missing,
        c.failed,
        summary.retries,
        summary.duration.as_secs_f64()
    );
}

/// The stored record carries the mapped fields unchanged (numbers compared as numbers).
fn same_record(got: &Value, want: &Value) -> bool {
    ["id", "weight"]
        .iter()
        .all(|k| got[k].as_f64() == want[k].as_f64())
        && got["name"] == want["name"]
        && got["types"] == want["types"]
}
