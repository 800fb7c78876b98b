//! `kye-bench pgstore N [URL]`: store throughput into PostgreSQL, against its physical floor,
//! in one process and one run.
//!
//! - kye: the overhead benchmark's record (`bench/overhead.kye`: 17 edges, two lists and one
//!   optional list in child tables) written through kye's PostgreSQL store as the runtime's
//!   writer does: batches of 256 records, each with its key outcome, one transaction each.
//! - floor: the same rows (model rows, child rows, key outcomes) written by binary `COPY`
//!   through tokio-postgres into unindexed tables of the same column types, one transaction
//!   per batch of 256 records as well;
//! - indexed floor: the same COPY into tables with kye's primary keys and unique indexes,
//!   to show what the upkeep of the indexes alone costs.
//!
//! All three sessions keep the server's `synchronous_commit` (`on` by default), as kye's store does.
//!
//! Each side writes into a schema of its own (dropped at the end). Prints one `RESULT` line
//! per side: seconds, the client's and the server's CPU seconds (the server's read from
//! `/proc` when it runs on this machine, `-` otherwise), records/s, rows/s, and peak RSS of
//! the process.

use std::error::Error;
use std::time::{Instant, SystemTime};

use kye::store::{
    open_store, IndexKey, KeyOutcomeWrite, KeyStatus, NewRun, Provenance, RecordWrite, StoreSpec,
    Timestamp, WriteItem,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::{peak_rss_kib, ready_value, AnyResult};

const BATCH: u64 = 256;

/// An integer as PostgreSQL's binary `numeric` (base-10000 digits).
#[derive(Debug)]
struct Numeric(i64);

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let mut n = self.0.unsigned_abs();
        let mut digits = Vec::new();
        while n > 0 {
            digits.push((n % 10_000) as i16);
            n /= 10_000;
        }
        digits.reverse();
        let weight = digits.len() as i16 - 1;
        out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        out.extend_from_slice(&weight.max(0).to_be_bytes());
        out.extend_from_slice(&(if self.0 < 0 { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`; `None` where
/// there is none (another machine's server).
fn proc_cpu(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the `)`.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// CPU seconds (user + system) this process has used (0 where unknown).
pub(crate) fn cpu_secs() -> f64 {
    proc_cpu("self").unwrap_or(0.0)
}

/// The server processes (backends) of `pids`, whose CPU time is read from `/proc` when the
/// server runs on this machine: what a side costs the server, whatever else runs meanwhile.
struct Backends(Vec<i32>);

impl Backends {
    /// The backends of the connections whose `application_name` is `name` (kye names its
    /// connections `kye SCHEMA`).
    fn named(c: &mut postgres::Client, name: &str) -> AnyResult<Backends> {
        let rows = c.query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )?;
        Ok(Backends(rows.iter().map(|r| r.get(0)).collect()))
    }

    /// CPU seconds of the backends so far; `None` when one cannot be read.
    fn cpu(&self) -> Option<f64> {
        self.0.iter().map(|p| proc_cpu(&p.to_string())).sum()
    }
}

/// What one side took: seconds writing, rows, client CPU, server CPU (when known).
type Measured = (f64, u64, f64, Option<f64>);

fn schema_name(side: &str) -> String {
    format!("kye_bench_{side}_{}", std::process::id())
}

fn connect(url: &str) -> AnyResult<postgres::Client> {
    let spec = kye::store::PgSpec::parse(url)?;
    let mut c = postgres::Config::new();
    c.host(&spec.host)
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.database);
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        c.password(pw);
    }
    Ok(c.connect(postgres::NoTls)?)
}

/// Rows one record makes: itself, its child rows, its key outcome.
fn rows_of(v: &serde_json::Value) -> u64 {
    let list = |k: &str| v[k].as_array().map_or(0, Vec::len) as u64;
    1 + list("types") + list("abilities") + list("hidden_abilities") + 1
}

fn kye_side(url: &str, n: u64) -> AnyResult<Measured> {
    let schema = kye::lang::compile_str("overhead.kye", include_str!("../overhead.kye"))
        .map_err(|e| e.to_string())?;
    let sep = if url.contains('?') { '&' } else { '?' };
    // The floor's connections are plain TCP (`NoTls`): so is kye's, unless the URL says.
    let tls = if url.contains("sslmode=") {
        ""
    } else {
        "&sslmode=disable"
    };
    let spec: StoreSpec = format!("{url}{sep}schema={}{tls}", schema_name("kye")).parse()?;
    let mut store = open_store(&spec)?;
    store.prepare(&schema)?;
    let run = store.begin_run(&NewRun::new("bench"))?;
    let backends = Backends::named(&mut connect(url)?, &format!("kye {}", schema_name("kye")))?;
    let server0 = backends.cpu();
    let mut secs = 0.0;
    let mut cpu = 0.0;
    let mut rows = 0;
    let mut id = 1;
    while id <= n {
        let mut batch = Vec::with_capacity(2 * BATCH as usize);
        for i in id..(id + BATCH).min(n + 1) {
            let v = ready_value(i as i64);
            rows += rows_of(&v);
            batch.push(WriteItem::Record(RecordWrite::new(
                "Ready",
                v,
                Provenance::new(run, "bench::ready_by_id"),
            )));
            batch.push(WriteItem::KeyOutcome(KeyOutcomeWrite {
                run,
                model: "Ready".into(),
                key: IndexKey::single("id", i),
                status: KeyStatus::Stored,
                reason: None,
                at: Timestamp::now(),
            }));
        }
        id += BATCH;
        let (start, cpu0) = (Instant::now(), cpu_secs());
        let results = store.write_batch(&batch)?;
        secs += start.elapsed().as_secs_f64();
        cpu += cpu_secs() - cpu0;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(e.into());
        }
    }
    let server = backends.cpu().zip(server0).map(|(b, a)| b - a);
    Ok((secs, rows, cpu, server))
}

const FLOOR_TABLES: &str = r#"
CREATE TABLE ready (id numeric, name text, weight numeric, height numeric, base_experience numeric,
    "order" numeric, is_default boolean, species text, hp numeric, attack numeric, defense numeric,
    special_attack numeric, special_defense numeric, speed numeric,
    _kye_run_id bigint, _kye_fetcher text, _kye_fetched_at timestamptz, _kye_hash text);
CREATE TABLE ready_types (id numeric, _kye_position integer, value text);
CREATE TABLE ready_abilities (id numeric, _kye_position integer, value text);
CREATE TABLE ready_hidden (id numeric, _kye_position integer, value text);
CREATE TABLE keys (run_id bigint, model text, key text, status text, reason text, at timestamptz);
"#;

/// The indexes kye's tables have (primary keys, the secondary index, the outcomes' index):
/// added for the second floor, which shows what index upkeep alone costs.
const KYE_INDEXES: &str = r#"
ALTER TABLE ready ADD PRIMARY KEY (id), ADD UNIQUE (name);
ALTER TABLE ready_types ADD PRIMARY KEY (id, _kye_position);
ALTER TABLE ready_abilities ADD PRIMARY KEY (id, _kye_position);
ALTER TABLE ready_hidden ADD PRIMARY KEY (id, _kye_position);
ALTER TABLE keys ADD UNIQUE (model, key, run_id);
"#;

fn floor_side(url: &str, n: u64, indexed: bool) -> AnyResult<Measured> {
    let mut c = connect(url)?;
    let schema = schema_name(if indexed { "indexed" } else { "floor" });
    c.batch_execute(&format!(
        "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"; \
         {FLOOR_TABLES} {}",
        if indexed { KYE_INDEXES } else { "" }
    ))?;
    let num = |v: &serde_json::Value| Numeric(v.as_i64().unwrap_or(0));
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[])?.get(0);
    let backends = Backends(vec![backend]);
    let server0 = backends.cpu();
    let mut secs = 0.0;
    let mut cpu = 0.0;
    let mut rows = 0;
    let mut id = 1;
    while id <= n {
        let values: Vec<serde_json::Value> = (id..(id + BATCH).min(n + 1))
            .map(|i| ready_value(i as i64))
            .collect();
        id += BATCH;
        let (start, cpu0) = (Instant::now(), cpu_secs());
        let mut tx = c.transaction()?;
        let now = SystemTime::now();
        {
            let t = [
                Type::NUMERIC,
                Type::TEXT,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::BOOL,
                Type::TEXT,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::NUMERIC,
                Type::INT8,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::TEXT,
            ];
            let mut w = BinaryCopyInWriter::new(tx.copy_in("COPY ready FROM STDIN BINARY")?, &t);
            for v in &values {
                let hash = kye::store::content_hash(v);
                let cols = [
                    "weight",
                    "height",
                    "base_experience",
                    "order",
                    "hp",
                    "attack",
                    "defense",
                    "special_attack",
                    "special_defense",
                    "speed",
                ]
                .map(|k| num(&v[k]));
                w.write(&[
                    &num(&v["id"]),
                    &v["name"].as_str(),
                    &cols[0],
                    &cols[1],
                    &cols[2],
                    &cols[3],
                    &v["is_default"].as_bool(),
                    &v["species"].as_str(),
                    &cols[4],
                    &cols[5],
                    &cols[6],
                    &cols[7],
                    &cols[8],
                    &cols[9],
                    &1i64,
                    &"bench::ready_by_id",
                    &now,
                    &hash,
                ])?;
                rows += 1;
            }
            w.finish()?;
        }
        for (table, edge) in [
            ("ready_types", "types"),
            ("ready_abilities", "abilities"),
            ("ready_hidden", "hidden_abilities"),
        ] {
            let t = [Type::NUMERIC, Type::INT4, Type::TEXT];
            let mut w = BinaryCopyInWriter::new(
                tx.copy_in(&format!("COPY {table} FROM STDIN BINARY"))?,
                &t,
            );
            for v in &values {
                for (pos, item) in v[edge].as_array().into_iter().flatten().enumerate() {
                    w.write(&[&num(&v["id"]), &(pos as i32), &item.as_str()])?;
                    rows += 1;
                }
            }
            w.finish()?;
        }
        {
            let t = [
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TIMESTAMPTZ,
            ];
            let mut w = BinaryCopyInWriter::new(tx.copy_in("COPY keys FROM STDIN BINARY")?, &t);
            for v in &values {
                let key = format!("{{\"id\":{}}}", v["id"]);
                w.write(&[&1i64, &"Ready", &key, &"stored", &None::<&str>, &now])?;
                rows += 1;
            }
            w.finish()?;
        }
        tx.commit()?;
        secs += start.elapsed().as_secs_f64();
        cpu += cpu_secs() - cpu0;
    }
    let server = backends.cpu().zip(server0).map(|(b, a)| b - a);
    Ok((secs, rows, cpu, server))
}

/// `pgstore N [URL]`.
pub fn pgstore(n: u64, url: &str) -> AnyResult<()> {
    let result = (|| -> AnyResult<()> {
        // Each side starts from a server at rest: the side before's dirty pages written out
        // (a checkpoint) and its new tables' statistics taken (an analyze, which autovacuum
        // would otherwise run during the next side).
        let settle = || -> AnyResult<()> {
            let mut c = connect(url)?;
            c.batch_execute("ANALYZE")?;
            // Needs a superuser (or pg_checkpoint): without, the side starts as it is.
            let _ = c.batch_execute("CHECKPOINT");
            Ok(())
        };
        settle()?;
        let (ks, krows, kcpu, kserver) = kye_side(url, n)?;
        settle()?;
        let (fs, frows, fcpu, fserver) = floor_side(url, n, false)?;
        settle()?;
        let (is, irows, icpu, iserver) = floor_side(url, n, true)?;
        let server = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.2}"));
        if krows != frows {
            return Err(
                format!("the sides wrote different rows: kye {krows}, floor {frows}").into(),
            );
        }
        println!(
            "RESULT side=kye secs={ks:.4} client_cpu={kcpu:.2} server_cpu={} records={n} rows={krows} records_per_sec={:.0} rows_per_sec={:.0}",
            server(kserver),
            n as f64 / ks,
            krows as f64 / ks
        );
        println!(
            "RESULT side=copy-floor secs={fs:.4} client_cpu={fcpu:.2} server_cpu={} records={n} rows={frows} records_per_sec={:.0} rows_per_sec={:.0}",
            server(fserver),
            n as f64 / fs,
            frows as f64 / fs
        );
        println!(
            "RESULT side=copy-indexed secs={is:.4} client_cpu={icpu:.2} server_cpu={} records={n} rows={irows} records_per_sec={:.0} rows_per_sec={:.0}",
            server(iserver),
            n as f64 / is,
            irows as f64 / is
        );
        println!(
            "RESULT kye_share_of_floor={:.2} kye_share_of_indexed={:.2} peak_rss_kib={}",
            fs / ks,
            is / ks,
            peak_rss_kib()
        );
        Ok(())
    })();
    if let Ok(mut c) = connect(url) {
        for side in ["kye", "floor", "indexed"] {
            let _ = c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                schema_name(side)
            ));
        }
    }
    result
}
