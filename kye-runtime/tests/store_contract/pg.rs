//! The PostgreSQL side of the suite: the server of `KYE_TEST_POSTGRES`, a throwaway schema
//! per case, and the store seen with plain SQL (as psql sees it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use kye_runtime::store::{PgSpec, StoreSpec};

use crate::harness::Snapshot;

/// The server's URL.
pub fn url() -> String {
    std::env::var("KYE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Runs `f` on a thread of its own: the blocking client cannot run on a tokio thread (the
/// async cases).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("PostgreSQL helper thread"))
}

fn client() -> Result<postgres::Client, postgres::Error> {
    let spec = PgSpec::parse(&url()).expect("KYE_TEST_POSTGRES is a postgres:// URL");
    let mut c = postgres::Config::new();
    c.host(&spec.host)
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.database)
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        c.password(pw);
    }
    c.connect(postgres::NoTls)
}

/// True when the server answers. Outside CI a missing server skips the case with one
/// printed reason; under `CI=true` it fails it.
pub fn available() -> bool {
    static ANSWERS: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    match ANSWERS.get_or_init(|| off_runtime(|| client().map(|_| ()).map_err(|e| e.to_string()))) {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true: PostgreSQL at {} does not answer: {e}", url())
        }
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "skipping PostgreSQL cases: nothing answers at {} ({e})",
                    url()
                )
            });
            false
        }
    }
}

/// A schema of its own for one case, dropped (with everything in it) at the end.
pub struct ThrowawaySchema {
    pub name: String,
}

impl ThrowawaySchema {
    pub fn new() -> ThrowawaySchema {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        ThrowawaySchema {
            name: format!(
                "kye_t_{}_{}_{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    pub fn spec(&self) -> StoreSpec {
        let base = url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={}", self.name)
            .parse()
            .expect("postgres spec")
    }
}

impl Drop for ThrowawaySchema {
    fn drop(&mut self) {
        let name = &self.name;
        off_runtime(|| {
            if let Ok(mut c) = client() {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        })
    }
}

fn schema_of(spec: &StoreSpec) -> String {
    match spec {
        StoreSpec::Postgres(p) => p.schema.clone(),
        other => panic!("not a PostgreSQL store: {other}"),
    }
}

/// The tables other than kye's own, with their columns in order and row counts; names kye
/// shortened (over 63 bytes) shown as kye's names, from `_kye_names`.
pub fn snapshot(spec: &StoreSpec) -> Snapshot {
    off_runtime(|| snapshot_here(spec))
}

fn snapshot_here(spec: &StoreSpec) -> Snapshot {
    let schema = schema_of(spec);
    let mut c = client().expect("PostgreSQL");
    let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
    let has_names: bool = c
        .query_one(
            "SELECT to_regclass(format('%I.%I', $1::text, '_kye_names')) IS NOT NULL",
            &[&schema],
        )
        .expect("names table")
        .get(0);
    if has_names {
        for r in c
            .query(
                &format!("SELECT \"table\", \"column\", name FROM \"{schema}\"._kye_names"),
                &[],
            )
            .expect("names")
        {
            names.insert((r.get(0), r.get(1)), r.get(2));
        }
    }
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             AND table_name NOT LIKE '\\_kye%'",
            &[&schema],
        )
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = BTreeMap::new();
    for t in tables {
        let cols: Vec<String> = c
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 \
                 AND table_name = $2 ORDER BY ordinal_position",
                &[&schema, &t],
            )
            .expect("columns")
            .iter()
            .map(|r| {
                let col: String = r.get(0);
                names.get(&(t.clone(), col.clone())).cloned().unwrap_or(col)
            })
            .collect();
        let rows: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM \"{schema}\".\"{}\"",
                    t.replace('"', "\"\"")
                ),
                &[],
            )
            .expect("rows")
            .get(0);
        let name = names.get(&(t.clone(), String::new())).cloned().unwrap_or(t);
        out.insert(name, (cols, rows as usize));
    }
    Snapshot::Tables(out)
}

/// After writers were killed: no child row without its parent, none twice.
pub fn after_crash(spec: &StoreSpec) {
    let schema = schema_of(spec);
    let mut c = client().expect("PostgreSQL");
    let orphans: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".\"Item__tags\" t WHERE NOT EXISTS \
                 (SELECT 1 FROM \"{schema}\".\"Item\" i WHERE i.id = t.id)"
            ),
            &[],
        )
        .expect("orphans")
        .get(0);
    assert_eq!(orphans, 0);
    let running: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\"._kye_runs WHERE status = 'running'"),
            &[],
        )
        .expect("runs")
        .get(0);
    assert_eq!(running, 0);
}
