//! Times batch validation of a CSV file the way `kye validate` reads it, phase by phase
//! (CSV parsing alone, then parsing + validation). For tuning; `kye validate` is the real thing.
//!
//! ```text
//! cargo run --release -p kye-lang --example validate_csv -- /tmp/kye-bench/bench.kye Customer /tmp/kye-bench/Customer.csv
//! ```

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [schema, model, data] = &args[..] else {
        return Err("usage: validate_csv SCHEMA.kye MODEL DATA.csv".into());
    };
    let schema = kye_lang::compile_str(schema, &std::fs::read_to_string(schema)?)?;

    let t = Instant::now();
    let mut rdr = csv::Reader::from_path(data)?;
    let mut rec = csv::StringRecord::new();
    let mut n = 0usize;
    while rdr.read_record(&mut rec)? {
        n += rec.len();
    }
    println!("csv parse only: {:?} ({n} cells)", t.elapsed());

    let t = Instant::now();
    let mut v = kye_lang::BatchValidator::new(&schema, model)?;
    let mut rdr = csv::Reader::from_path(data)?;
    let header: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
    let cols = v.columns(&header);
    while rdr.read_record(&mut rec)? {
        v.push_text_row(&cols, rec.iter());
    }
    let pushed = t.elapsed();
    let report = v.finish();
    println!(
        "parse + validate: {:?} (finish {:?}); valid={} rows={} records={} errors={}",
        t.elapsed(),
        t.elapsed() - pushed,
        report.valid,
        report.rows,
        report.records,
        report.errors.len()
    );
    Ok(())
}
