//! The PostgreSQL part of `kye-bench run` (`--only postgres`):
//!
//! - store throughput: `kye-bench pgstore N` (kye's PostgreSQL store against binary `COPY`
//!   into unindexed tables, same rows, one process) at each `--pg-store` size, with the
//!   process's peak RSS (flat from 10,000 to 100,000 records is the goal);
//! - fetch → PostgreSQL: the Pokémon example into PostgreSQL and into SQLite, and dlt with its
//!   `postgres` destination (merge on id) when bench/.venv has it, from the loopback PokeAPI
//!   (real-size documents) at each `--pg-counts` N, interleaved.
//!
//! Every side writes into a schema of its own, dropped afterwards.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use crate::run::{example_summary, measure_with, median, opt, Options, Paths, Side};
use crate::{start_server, AnyResult};

fn field(line: &str, name: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A client of the server, or why there is none.
fn client(url: &str) -> Result<postgres::Client, String> {
    let spec = kye::store::PgSpec::parse(url).map_err(|e| e.to_string())?;
    let mut c = postgres::Config::new();
    c.host(&spec.host)
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.database)
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        c.password(pw);
    }
    c.connect(postgres::NoTls).map_err(|e| e.to_string())
}

fn drop_schemas(url: &str, names: &[String]) {
    if let Ok(mut c) = client(url) {
        for n in names {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{n}\" CASCADE"));
        }
    }
}

/// True when the venv's Python can load dlt's postgres destination (psycopg2).
fn dlt_postgres(p: &Paths) -> bool {
    p.venv_bin.as_ref().is_some_and(|v| {
        Command::new(v.join("python"))
            .args(["-c", "import psycopg2, dlt"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub(crate) fn postgres(o: &Options, p: &Paths) -> AnyResult<String> {
    let mut s = String::new();
    writeln!(s, "\n### 5. PostgreSQL\n")?;
    if let Err(e) = client(&o.postgres) {
        writeln!(s, "Skipped: nothing answers at {} ({e}).", o.postgres)?;
        return Ok(s);
    }
    writeln!(
        s,
        "Server: {}. Load before: {}.\n",
        o.postgres,
        crate::parse::load()
    )?;
    writeln!(
        s,
        "Store throughput (`kye-bench pgstore N`: the overhead model, batches of 256 records \
         with their key outcomes, one transaction each; floor: the same rows by binary COPY into \
         unindexed tables, one transaction per batch):\n"
    )?;
    writeln!(s, "| records | rows | kye records/s | kye rows/s | COPY floor rows/s | kye / floor | peak RSS MiB | runs: kye s, floor s |")?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---|")?;
    for &n in &o.pg_store {
        let mut kye = Vec::new();
        let mut floor = Vec::new();
        let mut runs = Vec::new();
        let mut rows = 0.0;
        let mut rss = Vec::new();
        for _ in 0..o.reps {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["pgstore", &n.to_string(), &o.postgres])
                .stdout(Stdio::piped());
            let (sample, stdout) = measure_with(c, "pgstore", &[0], None)?;
            let line = |side: &str| {
                stdout
                    .lines()
                    .find(|l| l.contains(&format!("side={side} ")))
                    .map(str::to_string)
                    .unwrap_or_default()
            };
            let (k, f) = (line("kye"), line("copy-floor"));
            let (ks, fs) = (
                field(&k, "secs").unwrap_or(f64::NAN),
                field(&f, "secs").unwrap_or(f64::NAN),
            );
            rows = field(&k, "rows").unwrap_or(0.0);
            kye.push(ks);
            floor.push(fs);
            runs.push(format!("{ks:.2}, {fs:.2}"));
            if let Some(r) = sample.rss_kib {
                rss.push(r as f64 / 1024.0);
            }
        }
        let (ks, fs) = (median(kye), median(floor));
        writeln!(
            s,
            "| {n} | {rows:.0} | {:.0} | {:.0} | {:.0} | **{:.0}%** | {} | {} |",
            n as f64 / ks,
            rows / ks,
            rows / fs,
            100.0 * fs / ks,
            opt((!rss.is_empty()).then(|| median(rss)), 1),
            runs.join("; ")
        )?;
    }

    let example = p.tool(
        "examples/pokemon",
        "cargo build --release --example pokemon",
    )?;
    let dlt = dlt_postgres(p);
    let dlt_script = p.root.join("bench/py/dlt_pokemon.py");
    writeln!(
        s,
        "\nFetch → store, loopback PokeAPI, real-size documents, concurrency {}{}:\n",
        o.concurrency,
        if dlt {
            ""
        } else {
            "; dlt → PostgreSQL skipped: bench/.venv has no dlt[postgres] (bench/setup-venv.sh)"
        }
    )?;
    writeln!(s, "| N | side | median wall s | median work s | median client CPU s | peak RSS MiB | runs, wall (s) |")?;
    writeln!(s, "|---:|---|---:|---:|---:|---:|---|")?;
    let mut ratios = String::new();
    for &n in &o.pg_counts {
        let (mut server, base, _) = start_server(n, "real")?;
        let mut sides = vec![
            Side::new("kye → SQLite, the example"),
            Side::new("kye → PostgreSQL, the example"),
        ];
        if dlt {
            sides.push(Side::new("dlt 1.31 → PostgreSQL (merge on id)"));
        }
        let tmp = tempfile::tempdir()?;
        let mut schemas = Vec::new();
        let result = (|| -> AnyResult<()> {
            for rep in 0..o.reps {
                for (i, side) in sides.iter_mut().enumerate() {
                    let (n_s, c_s) = (n.to_string(), o.concurrency.to_string());
                    let sample = if i < 2 {
                        let db = if i == 0 {
                            tmp.path()
                                .join(format!("ex-{n}-{rep}.db"))
                                .display()
                                .to_string()
                        } else {
                            let schema =
                                format!("kye_bench_fetch_{}_{n}_{rep}", std::process::id());
                            schemas.push(schema.clone());
                            let sep = if o.postgres.contains('?') { '&' } else { '?' };
                            format!("{}{sep}schema={schema}", o.postgres)
                        };
                        let mut c = Command::new(&example);
                        c.args(["--db", &db, "fetch", &format!("Pokemon.id in 1..={n}")])
                            .args(["--concurrency", &c_s, "--format", "json", "-q"])
                            .env("POKEAPI_BASE_URL", &base)
                            .env_remove("KYE_POKEAPI__BASE_URL")
                            .env_remove("KYE_CONFIG")
                            .current_dir(tmp.path())
                            .stdout(Stdio::piped());
                        let (mut sample, stdout) =
                            measure_with(c, "the example", &[0, 65], Some(server.id()))?;
                        sample.work = Some(example_summary(&stdout, n)?);
                        sample
                    } else {
                        let Some(venv) = &p.venv_bin else { continue };
                        let dataset = format!("dlt_bench_{}_{n}_{rep}", std::process::id());
                        schemas.push(dataset.clone());
                        schemas.push(format!("{dataset}_staging"));
                        let mut c = Command::new(venv.join("python"));
                        c.arg(&dlt_script)
                            .args([&base, &n_s, &c_s])
                            .arg(tmp.path().join(format!("dlt-{n}-{rep}")))
                            .args(["--postgres", &o.postgres, "--dataset", &dataset])
                            .stdout(Stdio::piped());
                        measure_with(c, "dlt → PostgreSQL", &[0], Some(server.id()))?.0
                    };
                    side.samples.push(sample);
                }
                drop_schemas(&o.postgres, &schemas);
                schemas.clear();
            }
            Ok(())
        })();
        drop(server.stdin.take());
        let _ = server.wait();
        drop_schemas(&o.postgres, &schemas);
        result?;
        for side in &sides {
            writeln!(
                s,
                "| {n} | {} | {:.3} | {} | {} | {} | {} |",
                side.name,
                side.wall(),
                opt(side.work(), 3),
                opt(side.cpu(), 2),
                opt(side.rss_mib(), 1),
                side.all_walls()
            )?;
        }
        let work = |s: &Side| s.work().unwrap_or(s.wall());
        write!(
            ratios,
            "- N = {n}: kye → PostgreSQL / kye → SQLite (work): **{:.2}×** (target ≤ 1.5×)",
            work(&sides[1]) / work(&sides[0])
        )?;
        if let Some(d) = sides.get(2) {
            write!(
                ratios,
                "; dlt → PostgreSQL / kye → PostgreSQL (work): **{:.1}×** (target ≥ 20×)",
                work(d) / work(&sides[1])
            )?;
        }
        writeln!(ratios)?;
    }
    writeln!(s, "\nLoad after: {}.\n\n{ratios}", crate::parse::load())?;
    Ok(s)
}
