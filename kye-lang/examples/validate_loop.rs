//! Calls `validate_record` in a loop on the benchmark records, for profiling
//! (`perf record`, `valgrind --tool=callgrind`):
//!
//! ```text
//! cargo run --release -p kye-lang --example validate_loop -- ready 100000
//! cargo run --release -p kye-lang --example validate_loop -- pokemon 100000
//! ```
//!
//! `ready` is the flat record of `bench/overhead.kye` (the one `kye-bench overhead` times);
//! `pokemon` is a record of `examples/pokemon/pokemon.kye`, whose `types` and `abilities` are
//! references. Prints microseconds per call.

use std::hint::black_box;
use std::time::Instant;

use kye_lang::validate::validate_record;
use serde_json::{json, Value};

/// The record of `kye-bench overhead` (`ready_value` in bench/src/main.rs).
fn ready(id: i64) -> Value {
    json!({
        "id": id,
        "name": format!("pokemon-{id}"),
        "weight": 60 + id % 900,
        "height": 4 + id % 20,
        "base_experience": 112,
        "types": ["electric", "fairy"],
        "abilities": ["static", "lightning-rod"],
        "hidden_abilities": ["lightning-rod"],
        "order": id * 3,
        "is_default": true,
        "species": "pikachu",
        "hp": 35, "attack": 55, "defense": 40,
        "special_attack": 50, "special_defense": 50, "speed": 90,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("ready");
    let count: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let (schema, model) = match which {
        "ready" => (
            kye_lang::compile_str("overhead.kye", include_str!("../../bench/overhead.kye")),
            "Ready",
        ),
        "pokemon" => (
            kye_lang::compile_str(
                "pokemon.kye",
                include_str!("../../examples/pokemon/pokemon.kye"),
            ),
            "Pokemon",
        ),
        other => panic!("unknown record {other:?}: ready or pokemon"),
    };
    let schema = schema.expect("benchmark schema compiles");
    let records: Vec<Value> = (1..=1000).map(ready).collect();
    let start = Instant::now();
    for i in 0..count {
        let report = validate_record(&schema, model, black_box(&records[i % records.len()]));
        assert!(report.is_valid(), "{:?}", report.errors);
        black_box(report);
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!("{which}: {us:.3} us per validate_record");
}
