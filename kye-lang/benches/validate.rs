//! Validation benchmarks.
//!
//! ```text
//! cargo bench -p kye-lang --bench validate
//! ```
//!
//! - `batch_csv/100k_rows`: 100,000 CSV rows of the benchmark model (4 edges, two indexes, one
//!   assertion; the same data `examples/gen_bench_data.rs` writes), split with the `csv` crate
//!   and fed to [`BatchValidator::push_text_row`]. The end-to-end figure for 1,000,000 rows
//!   through `kye validate` is measured on the release binary (docs/validation.md).
//! - `record/nested`: [`validate_record`] on one JSON record with a nested list of records, the
//!   call the runtime makes for every fetched record.

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kye_lang::validate::{validate_record, BatchValidator};

const SCHEMA: &str = "Customer(id)(email) {
  id: Number
  email: String
  name: String
  age: Number
  assert age >= 0
}
";

/// The rows of `examples/gen_bench_data.rs`: unique ids in a scrambled order.
fn csv_data(rows: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows as usize * 60);
    writeln!(out, "id,email,name,age").unwrap();
    for i in 0..rows {
        let id = i.wrapping_mul(0x9E37_79B1);
        writeln!(
            out,
            "{id},user{id}@example.com,Customer {:x},{}",
            id ^ 0x5bd1_e995,
            18 + id % 80
        )
        .unwrap();
    }
    out
}

fn batch_csv(c: &mut Criterion) {
    let schema = kye_lang::compile_str("bench.kye", SCHEMA).expect("bench schema compiles");
    // Generated into a temp dir and read back, like a real file.
    let dir = std::env::temp_dir().join(format!("kye-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("Customer.csv");
    std::fs::write(&path, csv_data(100_000)).unwrap();
    let data = std::fs::read(&path).unwrap();

    let mut g = c.benchmark_group("batch_csv");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("100k_rows", |b| {
        b.iter(|| {
            let mut v = BatchValidator::new(&schema, "Customer").unwrap();
            let mut rdr = csv::Reader::from_reader(&data[..]);
            let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
            let cols = v.columns(&header);
            let mut rec = csv::StringRecord::new();
            while rdr.read_record(&mut rec).unwrap() {
                v.push_text_row(&cols, rec.iter());
            }
            let report = v.finish();
            assert!(report.valid);
            black_box(report.records)
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn record(c: &mut Criterion) {
    let schema = kye_lang::compile_str(
        "pokemon.kye",
        "Pokemon(id)(name) {
           id: Number
           name: String
           weight?: Number
           types+: PokemonType
           assert weight >= 0
         }
         PokemonType(name) { name: String, slot: Number }",
    )
    .expect("schema compiles");
    let rec = serde_json::json!({
        "id": "25", "name": "pikachu", "weight": 60,
        "types": [{"name": "electric", "slot": 1}, {"name": "fairy", "slot": "2"}],
        "base_experience": 112
    });
    c.bench_function("record/nested", |b| {
        b.iter(|| {
            let r = validate_record(&schema, "Pokemon", black_box(&rec));
            assert!(r.is_valid());
            black_box(r.value)
        })
    });
}

criterion_group!(benches, batch_csv, record);
criterion_main!(benches);
