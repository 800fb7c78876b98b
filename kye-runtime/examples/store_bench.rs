//! Write and lookup cost of the stores, for `docs/store.md`.
//!
//! ```text
//! cargo run --release -p kye-runtime --example store_bench -- [RECORDS] [sqlite,dir]
//! ```
//!
//! Writes RECORDS Pokémon-shaped records (5 columns, 4 child rows, nested references) plus
//! one key outcome each, in batches of 100 records, into a store in a temporary directory,
//! then times 1,000 freshness lookups. Only the store calls are timed, not building the items.
//! On Linux the CPU time of the writes is printed too (from `/proc/self/stat`): on a shared
//! machine it is steadier than wall time.

use std::time::Instant;

use kye_runtime::store::{
    open_store, IndexKey, KeyOutcomeWrite, KeyStatus, NewRun, Provenance, RecordWrite, StoreSpec,
    Timestamp, WriteItem,
};
use serde_json::json;

const SCHEMA: &str = r#"
Pokemon(id)(name) {
  id: Number
  name: String
  weight: Number
  height: Number
  base_experience: Number?
  types: PokemonType+
  abilities: PokemonAbility+
}
PokemonType(name) {
  name: String
}
PokemonAbility(name) {
  name: String
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let kinds = args.next().unwrap_or_else(|| "sqlite,dir".to_string());
    let schema = kye_lang::compile_str("pokemon.kye", SCHEMA)?;
    for kind in kinds.split(',') {
        let tmp = tempfile::tempdir()?;
        let spec: StoreSpec = match kind {
            "sqlite" => format!("sqlite:{}", tmp.path().join("kye.db").display()),
            "dir" => format!("dir:{}", tmp.path().join("out").display()),
            other => return Err(format!("unknown store kind {other:?} (sqlite, dir)").into()),
        }
        .parse()?;
        // The directory store fsyncs every document: a tenth of the records is enough.
        let n = if kind == "dir" { (n / 10).max(1) } else { n };
        let mut store = open_store(&spec)?;
        store.prepare(&schema)?;
        let run = store.begin_run(&NewRun::new("bench"))?;
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        for i in 0..n {
            let record = json!({
                "id": i, "name": format!("pokemon-{i}"), "weight": 60, "height": 4,
                "base_experience": 112,
                "types": [{"name": "electric"}, {"name": "steel"}],
                "abilities": [{"name": "static"}, {"name": "lightning-rod"}],
            });
            batch.push(WriteItem::Record(RecordWrite::new(
                "Pokemon",
                record,
                Provenance::new(run, "bench"),
            )));
            batch.push(WriteItem::KeyOutcome(KeyOutcomeWrite {
                run,
                model: "Pokemon".into(),
                key: IndexKey::single("id", i),
                status: KeyStatus::Stored,
                reason: None,
                at: Timestamp::now(),
            }));
            if batch.len() >= 200 {
                batches.push(std::mem::take(&mut batch));
            }
        }
        batches.push(batch);
        let cpu = cpu_seconds();
        let t = Instant::now();
        for b in &batches {
            for r in store.write_batch(b)? {
                r?;
            }
        }
        let write = t.elapsed().as_secs_f64();
        let cpu = match (cpu, cpu_seconds()) {
            (Some(a), Some(b)) => format!(" (CPU {:.1} µs/record)", (b - a) * 1e6 / n as f64),
            _ => String::new(),
        };
        let lookups = n.min(1000);
        let t = Instant::now();
        for i in 0..lookups {
            store.last_stored("Pokemon", &IndexKey::single("id", i))?;
        }
        let lookup = t.elapsed().as_secs_f64();
        println!(
            "{kind}: {n} records + outcomes in {write:.3} s = {:.1} µs/record{cpu}; last_stored {:.1} µs/lookup",
            write * 1e6 / n as f64,
            lookup * 1e6 / lookups as f64
        );
    }
    Ok(())
}

/// User + system CPU time of this process, where `/proc` has it (Linux; 100 ticks/s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
