//! Writes the validation benchmark's data: `bench.kye` and `Customer.csv` with N rows.
//!
//! ```text
//! cargo run --release -p kye-lang --example gen_bench_data -- 1000000 /tmp/kye-bench
//! kye validate --schema /tmp/kye-bench/bench.kye --model Customer --data /tmp/kye-bench/Customer.csv
//! ```
//!
//! The model has 4 edges, two indexes and one assertion. Ids are unique but in a scrambled
//! order (an odd multiplier is a bijection on u32), so the input is not sorted by key.

use std::io::{BufWriter, Write};

/// The benchmark schema.
pub const SCHEMA: &str = "# Benchmark model: 4 edges, two indexes, one assertion.
Customer(id)(email) {
  id: Number
  email: String
  name: String
  age: Number
  assert age >= 0
}
";

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: u32 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "kye-bench".to_string()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bench.kye"), SCHEMA)?;
    let path = dir.join("Customer.csv");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    writeln!(out, "id,email,name,age")?;
    for i in 0..rows {
        let id = i.wrapping_mul(0x9E37_79B1);
        writeln!(
            out,
            "{id},user{id}@example.com,Customer {:x},{}",
            id ^ 0x5bd1_e995,
            18 + id % 80
        )?;
    }
    out.flush()?;
    let size = std::fs::metadata(&path)?.len();
    println!("wrote {} rows ({} bytes) to {}", rows, size, path.display());
    Ok(())
}
