//! `kye-bench run`: every comparison, each side in a fresh process, repeated and interleaved
//! (kye, peer, kye, peer, ...) so drift on the machine hits both; prints markdown tables of
//! medians and ratios (also written to `bench/out/latest.md`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{start_server, workspace_root, AnyResult};

pub(crate) struct Options {
    pub(crate) smoke: bool,
    pub(crate) reps: usize,
    rows: u64,
    counts: Vec<u32>,
    /// Counts for the documents of PokeAPI's real sizes (empty: that set is skipped).
    real_counts: Vec<u32>,
    /// Another build of the example to run beside this one (e.g. the one before a change).
    example_before: Option<PathBuf>,
    scale: Vec<u64>,
    doc_bytes: usize,
    pub(crate) concurrency: usize,
    only: Vec<String>,
    /// The PostgreSQL server of the PostgreSQL part (`--postgres URL`).
    pub(crate) postgres: String,
    /// Keys of the PostgreSQL fetch comparison (real-size documents).
    pub(crate) pg_counts: Vec<u32>,
    /// Records of the PostgreSQL store throughput benchmark.
    pub(crate) pg_store: Vec<u64>,
}

impl Options {
    fn parse(args: &[String]) -> AnyResult<Options> {
        let smoke = args.iter().any(|a| a == "--smoke");
        let mut o = if smoke {
            Options {
                smoke,
                reps: 1,
                rows: 5_000,
                counts: vec![50],
                real_counts: vec![20],
                example_before: None,
                scale: vec![300, 1_000],
                doc_bytes: 30_000,
                concurrency: 16,
                only: Vec::new(),
                postgres: postgres_url(),
                pg_counts: vec![20],
                pg_store: vec![300],
            }
        } else {
            Options {
                smoke,
                reps: 3,
                rows: 1_000_000,
                counts: vec![1_000, 10_000],
                real_counts: vec![1_000, 2_000],
                example_before: None,
                scale: vec![10_000, 100_000],
                doc_bytes: 30_000,
                concurrency: 16,
                only: Vec::new(),
                postgres: postgres_url(),
                pg_counts: vec![1_000, 10_000],
                pg_store: vec![10_000, 100_000],
            }
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--smoke" => {}
                "--reps" => o.reps = value()?.parse()?,
                "--rows" => o.rows = value()?.parse()?,
                "--doc-bytes" => o.doc_bytes = value()?.parse()?,
                "--concurrency" => o.concurrency = value()?.parse()?,
                "--counts" => o.counts = list(value()?)?,
                "--example-before" => {
                    // Absolute: the example runs in a temporary directory.
                    let path = value()?;
                    o.example_before =
                        Some(std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?);
                }
                "--real-counts" => {
                    let v = value()?;
                    o.real_counts = if v.is_empty() || v == "none" {
                        Vec::new()
                    } else {
                        list(v)?
                    };
                }
                "--scale" => o.scale = list(value()?)?,
                "--postgres" => o.postgres = value()?.to_string(),
                "--pg-counts" => o.pg_counts = list(value()?)?,
                "--pg-store" => o.pg_store = list(value()?)?,
                "--only" => o.only = value()?.split(',').map(str::to_string).collect(),
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(o)
    }

    pub(crate) fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

fn list<T: std::str::FromStr>(s: &str) -> AnyResult<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(s.split(',')
        .map(|x| x.trim().replace('_', "").parse())
        .collect::<Result<_, _>>()?)
}

/// One timed run of one side.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Wall time of the whole process (start-up and imports included), seconds.
    pub(crate) wall: f64,
    /// The time the program reports for the work itself (`RESULT secs=`), seconds.
    pub(crate) work: Option<f64>,
    /// Peak RSS of the process, KiB (`/usr/bin/time -f %M`, else the program's own report).
    pub(crate) rss_kib: Option<u64>,
    /// User + system CPU of the process, seconds (`/usr/bin/time -f "%U %S"`).
    cpu: Option<f64>,
    /// CPU the benchmark server spent meanwhile, seconds (from its `/proc/PID/stat`).
    server_cpu: Option<f64>,
    us_per_key: Option<f64>,
    validate_us: Option<f64>,
    store_secs: Option<f64>,
}

fn field(line: &str, name: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// User + system CPU seconds a process has used so far (`/proc/PID/stat`, 100 ticks a second).
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying its stderr.
fn measure(cmd: Command, what: &str) -> AnyResult<Sample> {
    measure_with(cmd, what, &[0], None).map(|(s, _)| s)
}

/// [`measure`] accepting the exit codes `ok` and returning stdout too; with `server`, the
/// server process's CPU during the run is recorded.
pub(crate) fn measure_with(
    mut cmd: Command,
    what: &str,
    ok: &[i32],
    server: Option<u32>,
) -> AnyResult<(Sample, String)> {
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new()?;
    let mut cmd = if time.exists() {
        let mut wrapped = Command::new(time);
        wrapped
            .args(["-f", "%M %U %S", "-o"])
            .arg(rss_file.path())
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        wrapped
    } else {
        std::mem::replace(&mut cmd, Command::new("true"))
    };
    let server_before = server.and_then(process_cpu);
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).output()?;
    let wall = start.elapsed().as_secs_f64();
    let server_cpu = match (server_before, server.and_then(process_cpu)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    if !out.status.code().is_some_and(|c| ok.contains(&c)) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{what} failed ({}):\n{}", out.status, tail.join("\n")).into());
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = stdout.lines().find(|l| l.starts_with("RESULT "));
    // `/usr/bin/time` writes "Command exited with non-zero status N" first when it was.
    let timed: Vec<f64> = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.lines().last().map(str::to_string))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let sample = Sample {
        wall,
        work: result.and_then(|l| field(l, "secs")),
        rss_kib: timed.first().map(|k| *k as u64).or_else(|| {
            result
                .and_then(|l| field(l, "peak_rss_kib"))
                .map(|v| v as u64)
        }),
        cpu: (timed.len() == 3).then(|| timed[1] + timed[2]),
        server_cpu,
        us_per_key: result.and_then(|l| field(l, "us_per_key")),
        validate_us: result.and_then(|l| field(l, "validate_only_us")),
        store_secs: result.and_then(|l| field(l, "store_secs").or_else(|| field(l, "store_us"))),
    };
    Ok((sample, stdout))
}

/// The PostgreSQL server of the PostgreSQL part: `KYE_TEST_POSTGRES`, else the local one.
pub(crate) fn postgres_url() -> String {
    std::env::var("KYE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

pub(crate) struct Side {
    pub(crate) name: String,
    pub(crate) samples: Vec<Sample>,
}

impl Side {
    pub(crate) fn new(name: impl Into<String>) -> Side {
        Side {
            name: name.into(),
            samples: Vec::new(),
        }
    }
    pub(crate) fn wall(&self) -> f64 {
        median(self.samples.iter().map(|s| s.wall).collect())
    }
    pub(crate) fn work(&self) -> Option<f64> {
        let w: Vec<f64> = self.samples.iter().filter_map(|s| s.work).collect();
        (!w.is_empty()).then(|| median(w))
    }
    pub(crate) fn cpu(&self) -> Option<f64> {
        let c: Vec<f64> = self.samples.iter().filter_map(|s| s.cpu).collect();
        (!c.is_empty()).then(|| median(c))
    }
    fn server_cpu(&self) -> Option<f64> {
        let c: Vec<f64> = self.samples.iter().filter_map(|s| s.server_cpu).collect();
        (!c.is_empty()).then(|| median(c))
    }
    pub(crate) fn rss_mib(&self) -> Option<f64> {
        let r: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.rss_kib)
            .map(|k| k as f64 / 1024.0)
            .collect();
        (!r.is_empty()).then(|| median(r))
    }
    pub(crate) fn all_walls(&self) -> String {
        let v: Vec<String> = self
            .samples
            .iter()
            .map(|s| format!("{:.2}", s.wall))
            .collect();
        v.join(", ")
    }
}

pub(crate) fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

pub(crate) struct Paths {
    exe_dir: PathBuf,
    pub(crate) root: PathBuf,
    out: PathBuf,
    pub(crate) venv_bin: Option<PathBuf>,
}

impl Paths {
    fn find() -> AnyResult<Paths> {
        let exe = std::env::current_exe()?;
        let exe_dir = exe.parent().ok_or("no exe dir")?.to_path_buf();
        let root = workspace_root();
        let out = root.join("bench/out");
        std::fs::create_dir_all(&out)?;
        let venv = root.join("bench/.venv/bin");
        let venv_bin = venv.join("python").exists().then_some(venv);
        Ok(Paths {
            exe_dir,
            root,
            out,
            venv_bin,
        })
    }

    pub(crate) fn tool(&self, rel: &str, build: &str) -> AnyResult<PathBuf> {
        let p = self.exe_dir.join(rel);
        if p.exists() {
            Ok(p)
        } else {
            Err(format!(
                "{} not found: build it first with `{build}` (same profile as kye-bench)",
                p.display()
            )
            .into())
        }
    }
}

pub fn run(args: &[String]) -> AnyResult<()> {
    let o = Options::parse(args)?;
    let p = Paths::find()?;
    let mut report = String::new();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(
        report,
        "kye-bench ({profile} build{}), {cores} cores ({cpu}), medians of {} run(s)",
        if o.smoke { ", SMOKE: small N" } else { "" },
        o.reps
    )?;
    match &p.venv_bin {
        Some(v) => writeln!(report, "Python peers from {}", v.display())?,
        None => writeln!(
            report,
            "Python peers skipped: no bench/.venv (run bench/setup-venv.sh)"
        )?,
    }
    println!("{report}");

    if o.wants("validate") {
        let part = validation(&o, &p)?;
        println!("{part}");
        report.push_str(&part);
    }
    if o.wants("fetch") {
        let part = fetch(&o, &p)?;
        println!("{part}");
        report.push_str(&part);
    }
    if o.wants("scale") {
        let part = scale(&o, &p)?;
        println!("{part}");
        report.push_str(&part);
    }
    if o.wants("transform") {
        let part = transform(&o)?;
        println!("{part}");
        report.push_str(&part);
    }
    if o.wants("postgres") {
        let part = super::pgrun::postgres(&o, &p)?;
        println!("{part}");
        report.push_str(&part);
    }
    std::fs::write(
        p.out.join(if o.smoke { "smoke.md" } else { "latest.md" }),
        &report,
    )?;
    Ok(())
}

fn validation(o: &Options, p: &Paths) -> AnyResult<String> {
    let gen = p.tool(
        "examples/gen_bench_data",
        "cargo build --release -p kye-lang --example gen_bench_data",
    )?;
    let kye = p.tool("kye", "cargo build --release -p kye")?;
    let dir = p.out.join(format!("validate-{}", o.rows));
    let csv = dir.join("Customer.csv");
    if !csv.exists() {
        let st = Command::new(&gen)
            .arg(o.rows.to_string())
            .arg(&dir)
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            return Err(format!("{} failed", gen.display()).into());
        }
    }
    let size_mb = std::fs::metadata(&csv)?.len() as f64 / 1e6;
    let mut ours = Side::new("kye validate (Rust)");
    let mut theirs = Side::new("kye 0.1.2 + pandas 2.2.3 (Python)");
    for _ in 0..o.reps {
        let mut c = Command::new(&kye);
        c.args([
            "validate",
            "--schema",
            "bench.kye",
            "--model",
            "Customer",
            "--data",
            "Customer.csv",
            "--format",
            "json",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null());
        ours.samples.push(measure(c, "kye validate")?);
        if let Some(venv) = &p.venv_bin {
            let mut c = Command::new(venv.join("kye"));
            c.args(["bench.kye", "--model", "Customer", "--data", "Customer.csv"])
                .current_dir(&dir)
                .stdout(Stdio::null());
            theirs.samples.push(measure(c, "kyepy")?);
        }
    }
    let mut s = String::new();
    writeln!(
        s,
        "\n### 1. Validation: {} rows ({size_mb:.1} MB CSV), 4 edges, 2 indexes, 1 assertion\n",
        o.rows
    )?;
    writeln!(s, "| side | median wall s | runs (s) | peak RSS MiB |")?;
    writeln!(s, "|---|---:|---|---:|")?;
    for side in [&ours, &theirs] {
        if side.samples.is_empty() {
            continue;
        }
        writeln!(
            s,
            "| {} | {:.3} | {} | {} |",
            side.name,
            side.wall(),
            side.all_walls(),
            opt(side.rss_mib(), 1)
        )?;
    }
    if !theirs.samples.is_empty() {
        writeln!(
            s,
            "\nkye is **{:.1}×** faster (target 50×).",
            theirs.wall() / ours.wall()
        )?;
    }
    Ok(s)
}

/// One side of the fetch comparison: how to start it and what its output says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FetchSide {
    Floor,
    FloorParse,
    Kye,
    Example,
    ExampleBefore,
    Dlt,
}

impl FetchSide {
    fn name(self) -> &'static str {
        match self {
            FetchSide::Floor => "floor: bare reqwest, bodies discarded",
            FetchSide::FloorParse => {
                "floor + parse: bare reqwest + typed serde parse/map, no store"
            }
            FetchSide::Kye => "kye → SQLite, the bench's typed fetcher",
            FetchSide::Example => "kye → SQLite, the example's fetchers (`examples/pokemon`)",
            FetchSide::ExampleBefore => {
                "kye → SQLite, the example's fetchers, given build (--example-before)"
            }
            FetchSide::Dlt => "dlt → duckdb",
        }
    }
}

/// The `duration` and counts of `fetch --format json`'s summary.
pub(crate) fn example_summary(stdout: &str, n: u32) -> AnyResult<f64> {
    let summary: serde_json::Value = serde_json::from_str(stdout)
        .map_err(|e| format!("the example's summary is not JSON ({e}): {stdout}"))?;
    let count = |k: &str| summary["counts"][k].as_u64().unwrap_or(0);
    let (stored, rejected) = (count("stored"), count("rejected"));
    // The fixtures' haunter (id 93) has `base_experience: null`: quarantined.
    if stored + rejected != u64::from(n) || stored + 5 < u64::from(n) {
        return Err(format!("the example did not store everything: {stdout}").into());
    }
    summary["duration"]
        .as_f64()
        .ok_or_else(|| format!("no duration in the example's summary: {stdout}").into())
}

fn fetch(o: &Options, p: &Paths) -> AnyResult<String> {
    let dlt_script = p.root.join("bench/py/dlt_pokemon.py");
    let example = p.tool(
        "examples/pokemon",
        "cargo build --release --example pokemon",
    )?;
    let mut s = String::new();
    writeln!(
        s,
        "\n### 2. Fetch → validate → store, loopback server, concurrency {}\n",
        o.concurrency
    )?;
    writeln!(s, "Load before: {}.\n", super::parse::load())?;
    writeln!(s, "| documents | N | side | median wall s | median work s | median client CPU s | server CPU s | peak RSS MiB | kye writer in the store, s | runs, wall (s) |")?;
    writeln!(s, "|---|---:|---|---:|---:|---:|---:|---:|---:|---|")?;
    let mut ratios = String::new();
    let sets: Vec<(String, u32)> = o
        .counts
        .iter()
        .map(|&n| (o.doc_bytes.to_string(), n))
        .chain(o.real_counts.iter().map(|&n| ("real".to_string(), n)))
        .collect();
    for (size, n) in sets {
        let (mut server, base, info) = start_server(n, &size)?;
        eprintln!("server {base} {info}");
        let server_pid = Some(server.id());
        let mean_kb = info
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("mean_doc_bytes="))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |b| b / 1000.0);
        let label = if size == "real" {
            format!("real size, mean {mean_kb:.0} KB")
        } else {
            format!("~{mean_kb:.0} KB")
        };
        let mut sides: Vec<(FetchSide, Side)> = [
            FetchSide::Floor,
            FetchSide::FloorParse,
            FetchSide::Kye,
            FetchSide::Example,
            FetchSide::ExampleBefore,
            FetchSide::Dlt,
        ]
        .into_iter()
        .filter(|f| *f != FetchSide::Dlt || p.venv_bin.is_some())
        .filter(|f| *f != FetchSide::ExampleBefore || o.example_before.is_some())
        .map(|f| (f, Side::new(f.name())))
        .collect();
        let tmp = tempfile::tempdir()?;
        let result = (|| -> AnyResult<()> {
            for rep in 0..o.reps {
                for (which, side) in sides.iter_mut() {
                    let (n_s, c_s) = (n.to_string(), o.concurrency.to_string());
                    let sample = match which {
                        FetchSide::Floor | FetchSide::FloorParse => {
                            let mut c = Command::new(std::env::current_exe()?);
                            c.args(["floor", &base, &n_s, &c_s]);
                            if *which == FetchSide::FloorParse {
                                c.arg("parse");
                            }
                            c.stdout(Stdio::piped());
                            measure_with(c, "floor", &[0], server_pid)?.0
                        }
                        FetchSide::Kye => {
                            let db = tmp.path().join(format!("kye-{n}-{rep}.db"));
                            let mut c = Command::new(std::env::current_exe()?);
                            c.args(["kye-fetch", &base, &n_s, &c_s])
                                .arg(&db)
                                .stdout(Stdio::piped());
                            measure_with(c, "kye-fetch", &[0], server_pid)?.0
                        }
                        FetchSide::Example | FetchSide::ExampleBefore => {
                            // As a user runs it: the example's binary, its own fetchers and
                            // mapping, kye's command line; 65 = some records quarantined.
                            let binary = match (which, &o.example_before) {
                                (FetchSide::ExampleBefore, Some(other)) => other,
                                _ => &example,
                            };
                            let mut c = Command::new(binary);
                            c.arg("--db")
                                .arg(tmp.path().join(format!("example-{n}-{rep}.db")))
                                .args(["fetch", &format!("Pokemon.id in 1..={n}")])
                                .args(["--concurrency", &c_s, "--format", "json", "-q"])
                                .env("POKEAPI_BASE_URL", &base)
                                .env_remove("KYE_POKEAPI__BASE_URL")
                                .env_remove("KYE_CONFIG")
                                .current_dir(tmp.path())
                                .stdout(Stdio::piped());
                            let (mut sample, stdout) =
                                measure_with(c, "the example", &[0, 65], server_pid)?;
                            sample.work = Some(example_summary(&stdout, n)?);
                            sample
                        }
                        FetchSide::Dlt => {
                            let Some(venv) = &p.venv_bin else { continue };
                            let work = tmp.path().join(format!("dlt-{n}-{rep}"));
                            let mut c = Command::new(venv.join("python"));
                            c.arg(&dlt_script)
                                .args([&base, &n_s, &c_s])
                                .arg(&work)
                                .stdout(Stdio::piped());
                            measure_with(c, "dlt", &[0], server_pid)?.0
                        }
                    };
                    side.samples.push(sample);
                }
            }
            Ok(())
        })();
        drop(server.stdin.take());
        let _ = server.wait();
        result?;
        for (_, side) in &sides {
            let store: Vec<f64> = side.samples.iter().filter_map(|x| x.store_secs).collect();
            writeln!(
                s,
                "| {label} | {n} | {} | {:.3} | {} | {} | {} | {} | {} | {} |",
                side.name,
                side.wall(),
                opt(side.work(), 3),
                opt(side.cpu(), 2),
                opt(side.server_cpu(), 2),
                opt(side.rss_mib(), 1),
                opt((!store.is_empty()).then(|| median(store)), 3),
                side.all_walls()
            )?;
        }
        let get = |f: FetchSide| sides.iter().find(|(w, _)| *w == f).map(|(_, s)| s);
        let (Some(floor), Some(parse), Some(kye), Some(ex)) = (
            get(FetchSide::Floor),
            get(FetchSide::FloorParse),
            get(FetchSide::Kye),
            get(FetchSide::Example),
        ) else {
            continue;
        };
        let cpu = |s: &Side| s.cpu().unwrap_or(f64::NAN);
        let work = |s: &Side| s.work().unwrap_or(s.wall());
        write!(
            ratios,
            "- {label}, N = {n}: client CPU / (floor + parse): example **{:.2}×** (target ≤ 1.5×), \
             bench fetcher {:.2}×; work / floor: example {:.2}×, bench fetcher {:.2}×",
            cpu(ex) / cpu(parse),
            cpu(kye) / cpu(parse),
            work(ex) / work(floor),
            work(kye) / work(floor),
        )?;
        if let Some(dlt) = get(FetchSide::Dlt) {
            write!(
                ratios,
                "; dlt / kye (work): **{:.1}×** the example (target ≥ 20×), {:.1}× the bench fetcher; \
                 dlt / example (wall) {:.1}×",
                work(dlt) / work(ex),
                work(dlt) / work(kye),
                dlt.wall() / ex.wall()
            )?;
        }
        if let Some(before) = get(FetchSide::ExampleBefore) {
            write!(
                ratios,
                "; the given build of the example: client CPU / (floor + parse) {:.2}×, work {:.2}× this build's",
                cpu(before) / cpu(parse),
                work(before) / work(ex)
            )?;
        }
        writeln!(ratios)?;
    }
    writeln!(s, "\nLoad after: {}.\n\n{ratios}", super::parse::load())?;
    Ok(s)
}

/// A transformer over N stored records (`kye-bench transform N`): the first run, the second
/// after 1% of the inputs changed, and the floor (the same cards by hand through the store API).
fn transform(o: &Options) -> AnyResult<String> {
    let n: u64 = if o.smoke { 2_000 } else { 100_000 };
    let mut s = String::new();
    writeln!(
        s,
        "\n### 6. A transformer over {n} stored records (`kye-bench transform {n}`)\n"
    )?;
    writeln!(
        s,
        "| side | median s | records/s | runs (s) |\n|---|---:|---:|---|"
    )?;
    let (mut first, mut second, mut floor, mut pct) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.reps {
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["transform", &n.to_string()]).stdout(Stdio::piped());
        let (_, out) = measure_with(c, "transform", &[0], None)?;
        let line = out
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .ok_or("kye-bench transform printed no RESULT")?;
        let get = |name| field(line, name).ok_or(format!("no {name} in {line}"));
        first.push(get("first_secs")?);
        second.push(get("second_secs")?);
        floor.push(get("floor_secs")?);
        pct.push(get("second_pct_of_first")?);
    }
    let runs = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (side, xs, count) in [
        (
            "floor: the same cards by hand through the store API",
            &floor,
            n,
        ),
        (
            "kye transform, first run (every card, with lineage)",
            &first,
            n,
        ),
        (
            "kye transform, second run (1% of inputs changed)",
            &second,
            n / 100,
        ),
    ] {
        let m = median(xs.clone());
        writeln!(
            s,
            "| {side} | {m:.3} | {:.0} | {} |",
            count as f64 / m,
            runs(xs)
        )?;
    }
    writeln!(
        s,
        "\nSecond run / first run: **{:.1}%** (median of the runs' own ratios; goal < 5%).",
        median(pct)
    )?;
    Ok(s)
}

fn scale(o: &Options, _p: &Paths) -> AnyResult<String> {
    let mut s = String::new();
    writeln!(
        s,
        "\n### 3–4. Scale and per-key overhead: a fetcher returning a ready value (no network) → validate → SQLite\n"
    )?;
    writeln!(
        s,
        "| keys | median µs/key | keys/s | peak RSS MiB | writer in the store, µs/key | validate_record alone, µs | runs, work (s) |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|---|")?;
    for &n in &o.scale {
        let mut side = Side::new("overhead");
        for _ in 0..o.reps {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["overhead", &n.to_string()]).stdout(Stdio::piped());
            side.samples.push(measure(c, "overhead")?);
        }
        let us = median(side.samples.iter().filter_map(|x| x.us_per_key).collect());
        let works: Vec<String> = side.samples.iter().map(|x| opt(x.work, 2)).collect();
        let validate = median(side.samples.iter().filter_map(|x| x.validate_us).collect());
        let store = median(side.samples.iter().filter_map(|x| x.store_secs).collect());
        writeln!(
            s,
            "| {n} | {us:.2} | {:.0} | {} | {store:.2} | {validate:.2} | {} |",
            1e6 / us,
            opt(side.rss_mib(), 1),
            works.join(", ")
        )?;
    }
    Ok(s)
}
