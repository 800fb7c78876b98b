//! The PostgreSQL store (feature `postgres`, `--db postgres://...`): the SQLite store's layout
//! and meaning in a PostgreSQL schema, written by any number of kye processes at once.
//!
//! Two handles, as for SQLite: [`PgStore`], the writer, and [`PgReader`], a connection that
//! reads and has no write methods. This file opens them and holds the connection (`Conn`);
//! `url` parses the store spec, `tls` connects, `ddl` holds the tables and names, `convert`
//! the values, `write`, `batch`, `upsert`, `items` and `clash` (unique violations) the writer's
//! side and `read` every query.
//!
//! Runs are told apart from dead ones by a session advisory lock each running run holds on
//! its writer's connection: PostgreSQL releases it when the connection ends, whatever ended
//! the process.

mod batch;
mod clash;
mod convert;
mod ddl;
mod items;
pub(crate) mod queued;
mod read;
mod runs;
#[cfg(feature = "server")]
mod server;
mod tls;
mod upsert;
mod url;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use postgres::{Client, Statement};
use sha2::{Digest, Sha256};

use crate::store::layout::ModelLayout;
use crate::store::traits::read_through;
use crate::store::{RunId, StoreError};

#[cfg(feature = "server")]
pub use server::PgServerStore;
pub use url::{PgSpec, SslMode};

/// Version of kye's own tables, as for SQLite (`_kye_meta.format_version`): 1 at first; 2 once a
/// value object was stored (a `jsonb` column); 3 since `_kye_keys` is indexed by the key's own
/// text (`ddl::key_id`, no `key_md5` column), which a kye reading up to 2 would look up and
/// upsert by a column that is gone. A writer of this kye makes an older store format 3 when it
/// opens it (`PgStore::add_internal_tables`); readers read either.
const FORMAT_VERSION: i64 = 3;

/// Nested records deeper than this are not followed when storing (guards against cycles).
const MAX_NESTING: usize = 32;

/// Runs `f` on a thread outside any tokio runtime: the blocking client drives its own
/// runtime, which tokio refuses to start on a runtime's thread (the executor's workers, the
/// writer's blocking thread). Elsewhere `f` runs right here.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// One connection to the server, reconnected when it was lost, with its prepared statements.
pub(crate) struct Conn {
    spec: PgSpec,
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    /// Runs whose advisory lock this connection must hold (taken again after a reconnect).
    running: Vec<RunId>,
    lock_class: i32,
    /// Queued runs whose keys this connection records, with the class of their enqueue lock
    /// (`store::queued`): taken again after a reconnect, as the run locks are, or a process
    /// seeing the lock free would end the run while its keys are still being recorded.
    enqueuing: Vec<(i32, RunId)>,
}

/// What a closure running on the connection gets: the client and its statement cache.
pub(crate) struct Session<'a> {
    pub client: &'a mut Client,
    statements: &'a mut HashMap<String, Statement>,
}

impl Session<'_> {
    /// The prepared statement of `sql` (prepared once per connection).
    pub fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

impl Drop for Conn {
    /// The client closes its connection by blocking on its own runtime: off any tokio thread.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            off_runtime(move || drop(client));
        }
    }
}

impl Conn {
    /// Connects; an error names the host and database (never the password).
    pub(crate) fn open(spec: &PgSpec) -> Result<Conn, StoreError> {
        let mut conn = Conn {
            spec: spec.clone(),
            client: None,
            statements: HashMap::new(),
            running: Vec::new(),
            lock_class: lock_class(&spec.schema),
            enqueuing: Vec::new(),
        };
        conn.connect()?;
        Ok(conn)
    }

    fn connect(&mut self) -> Result<(), StoreError> {
        let spec = &self.spec;
        let refused = |message: String| StoreError::Connect {
            host: format!("{}:{}", spec.host, spec.port),
            database: spec.database.clone(),
            user: spec.user.clone(),
            message: crate::redact::redact_text(&message),
        };
        let config = spec.config()?;
        let tls = tls::Tls::new(spec.sslmode, spec.sslrootcert.as_deref()).map_err(refused)?;
        // Custom plans always: kye binds arrays of keys as text cast in SQL, which a generic
        // plan would cast again for every row it scans instead of probing the index.
        // `synchronous_commit` stays the server's: a batch kye saw committed (and the key
        // outcomes a resume trusts) must survive a crash of the server.
        let search_path = format!(
            "SET search_path TO {}; SET plan_cache_mode = force_custom_plan",
            ddl::q(&spec.schema)
        );
        let locks: Vec<(i32, RunId, bool)> = (self.running.iter())
            .map(|run| (self.lock_class, *run, false))
            .chain(
                self.enqueuing
                    .iter()
                    .map(|(class, run)| (*class, *run, true)),
            )
            .collect();
        let client = off_runtime(
            move || -> Result<Result<Client, (RunId, bool)>, postgres::Error> {
                let mut client = match tls {
                    Some(tls) => config.connect(tls)?,
                    None => config.connect(postgres::NoTls)?,
                };
                client.batch_execute(&search_path)?;
                // Never waits: the lost connection's backend may still hold a run's lock (the
                // server has not noticed it ended), and waiting could last hours.
                for (class, run, enqueue) in locks {
                    let taken: bool = client
                        .query_one(
                            "SELECT pg_try_advisory_lock($1, $2)",
                            &[&class, &(run.0 as i32)],
                        )?
                        .get(0);
                    if !taken {
                        return Ok(Err((run, enqueue)));
                    }
                }
                Ok(Ok(client))
            },
        )
        .map_err(|e| refused(error_text(&e)))?;
        let client = client.map_err(|(run, enqueue)| {
            refused(if enqueue {
                format!(
                    "the connection was lost and the enqueue lock of queued run {} is still \
                     held by the server's end of it (the server has not noticed the \
                     connection ended); recording the run's keys cannot go on: the keys \
                     recorded are done, record the request again for the rest",
                    run.0
                )
            } else {
                format!(
                    "the connection was lost and run {} is still held by the server's end of \
                     it (the server has not noticed the connection ended); the run cannot go \
                     on: run the request again to resume it",
                    run.0
                )
            })
        })?;
        self.client = Some(client);
        self.statements.clear();
        Ok(())
    }

    /// Runs `f` on the connection (reconnecting first if it was lost). A connection lost
    /// during `f` fails it; the next call reconnects.
    pub(crate) fn run<T: Send>(
        &mut self,
        f: impl FnOnce(&mut Session<'_>) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.connect()?;
        }
        let Some(client) = self.client.as_mut() else {
            return Err(self.lost());
        };
        let statements = &mut self.statements;
        let result = off_runtime(move || {
            let mut session = Session { client, statements };
            f(&mut session)
        });
        result.map_err(|e| {
            if e.is_closed() || self.client.as_ref().is_none_or(Client::is_closed) {
                // Dropped off any tokio thread, as in `Drop`: the client closes by blocking on
                // its own runtime (a worker whose connection the server ended panicked here).
                if let Some(dead) = self.client.take() {
                    off_runtime(move || drop(dead));
                }
            }
            self.error(e)
        })
    }

    fn lost(&self) -> StoreError {
        StoreError::Connect {
            host: format!("{}:{}", self.spec.host, self.spec.port),
            database: self.spec.database.clone(),
            user: self.spec.user.clone(),
            message: "the connection was lost".to_string(),
        }
    }

    pub(crate) fn error(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            location: self.spec.to_string(),
            message: crate::redact::redact_text(&error_text(&source)),
            code: source.code().map(|c| c.code().to_string()),
        }
    }

    /// Holds the enqueue lock (`class`, `run`) from now on: taken again after a reconnect
    /// (the caller took it on this connection).
    pub(crate) fn hold_enqueue_lock(&mut self, class: i32, run: RunId) {
        self.enqueuing.push((class, run));
    }

    /// Stops taking the enqueue lock of `run` again after a reconnect.
    pub(crate) fn forget_enqueue_lock(&mut self, run: RunId) {
        self.enqueuing.retain(|(_, r)| *r != run);
    }

    /// Forgets prepared statements (after DDL changed the tables they read).
    fn forget_statements(&mut self) {
        self.statements.clear();
    }
}

/// A client error with the server's message (`db error: ERROR: ...`, or the I/O cause).
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => {
            // The causes too: "error performing TLS handshake: invalid peer certificate: ...".
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !s.contains(&text) {
                    s.push_str(": ");
                    s.push_str(&text);
                }
                source = cause.source();
            }
            s
        }
    }
}

/// The advisory lock class of a schema's runs (`pg_advisory_lock(class, run_id)`); object 0
/// is the lock `prepare` takes.
fn lock_class(schema: &str) -> i32 {
    let h = Sha256::digest(format!("kye:{schema}").as_bytes());
    i32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x7fff_ffff
}

/// A read-only handle on a PostgreSQL store: it implements only
/// [`StoreRead`](crate::store::StoreRead). Opened with [`PgReader::open`] (or handed out by
/// [`PgStore`]'s [`reader`](crate::store::StoreWrite::reader)), it has a connection of its own
/// and sees every batch a writer has committed.
pub struct PgReader {
    conn: Mutex<Conn>,
    spec: PgSpec,
    location: PathBuf,
    /// kye's own tables exist (always, for a reader).
    initialized: bool,
    layouts: HashMap<String, ModelLayout>,
    /// Model tables from before issue 18 still without `_kye_source` (read with a NULL source).
    no_source: std::collections::HashSet<String>,
    /// `_kye_runs` has its `source` column.
    runs_source: bool,
    /// True for the writer's own handle (its runs are alive: it holds their locks).
    writer: bool,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgReader({})", self.spec)
    }
}

/// The PostgreSQL store opened for writing. See the module docs and `docs/store.md`.
///
/// Several writers (processes) may write one store at once; each batch is one transaction,
/// retried when PostgreSQL reports a serialization failure or deadlock.
#[derive(Debug)]
pub struct PgStore {
    db: PgReader,
    /// What this writer's last batches found stored (how the next batch is written).
    expect: write::Expect,
}

impl PgReader {
    /// Opens an existing store for reading. A database or schema without kye's tables is
    /// [`StoreError::NotFound`].
    pub fn open(spec: &PgSpec) -> Result<PgReader, StoreError> {
        let mut reader = PgReader::connect(spec, false)?;
        if !reader.has_table("_kye_models")? {
            return Err(StoreError::NotFound {
                path: reader.location.clone(),
            });
        }
        reader.check_format_version()?;
        reader.load_layouts()?;
        Ok(reader)
    }

    fn connect(spec: &PgSpec, writer: bool) -> Result<PgReader, StoreError> {
        Ok(PgReader {
            conn: Mutex::new(Conn::open(spec)?),
            spec: spec.clone(),
            location: PathBuf::from(spec.to_string()),
            initialized: true,
            layouts: HashMap::new(),
            no_source: Default::default(),
            runs_source: true,
            writer,
        })
    }

    /// The store's spec (shown without its password).
    pub fn spec(&self) -> &PgSpec {
        &self.spec
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conn_mut(&mut self) -> &mut Conn {
        self.conn.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the store's schema has a table of this (physical) name.
    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        let schema = self.spec.schema.clone();
        self.conn().run(move |s| {
            let row = s.client.query_one(
                "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                &[&schema, &name],
            )?;
            Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
        })
    }

    fn format_version(&self) -> Result<Option<String>, StoreError> {
        if !self.has_table("_kye_meta")? {
            return Ok(None);
        }
        self.conn().run(|s| {
            let row = s.client.query_opt(
                "SELECT value FROM _kye_meta WHERE key = 'format_version'",
                &[],
            )?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn check_format_version(&self) -> Result<(), StoreError> {
        let Some(text) = self.format_version()? else {
            return Ok(());
        };
        match text.trim().parse::<i64>() {
            Ok(v) if v <= FORMAT_VERSION => Ok(()),
            _ => Err(StoreError::Corrupt {
                path: self.location.clone(),
                message: format!(
                    "written by a newer kye (store format {}, this kye reads up to \
                     {FORMAT_VERSION}); upgrade kye or use another schema (?schema=)",
                    crate::store::key::cut(&text, 40)
                ),
            }),
        }
    }

    fn load_layouts(&mut self) -> Result<(), StoreError> {
        let rows: Vec<(String, String)> = self.conn().run(|s| {
            let rows = s
                .client
                .query("SELECT model, layout FROM _kye_models", &[])?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        self.layouts.clear();
        for (model, text) in rows {
            let layout: ModelLayout =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    path: self.location.clone(),
                    message: format!("stored layout of model {model} is unreadable: {e}"),
                })?;
            self.layouts.insert(model, layout);
        }
        // Tables of a store made before issue 18 that no writer has upgraded yet.
        let tables: Vec<String> = self.layouts.values().map(|l| l.table.clone()).collect();
        let schema = self.spec.schema.clone();
        let (no_source, runs_source) = self.conn().run(move |s| {
            let have: Vec<String> = s
                .client
                .query(
                    "SELECT table_name::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND column_name = $2",
                    &[&schema, &crate::store::layout::SOURCE_COLUMN],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let runs: bool = s
                .client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = '_kye_runs' \
                     AND column_name = 'source')",
                    &[&schema],
                )?
                .get(0);
            let no_source = tables
                .into_iter()
                .filter(|t| !have.contains(&ddl::ident(t).into_owned()))
                .collect();
            Ok((no_source, runs))
        })?;
        self.no_source = no_source;
        self.runs_source = runs_source;
        Ok(())
    }

    fn layout(&self, model: &str) -> Result<&ModelLayout, StoreError> {
        self.layouts
            .get(model)
            .ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })
    }

    /// Where the store is, as shown (`postgres://user@host:port/db`, no password).
    pub fn location_text(&self) -> &Path {
        &self.location
    }
}

impl PgStore {
    /// Connects to the store for writing: creates its schema if needed and marks runs whose
    /// writers died `interrupted`. Nothing else is written before
    /// [`prepare`](crate::store::StoreWrite::prepare) has checked the schema's tables.
    pub fn open(spec: &PgSpec) -> Result<PgStore, StoreError> {
        let mut store = PgStore {
            db: PgReader::connect(spec, true)?,
            expect: write::Expect::default(),
        };
        store.db.initialized = store.db.has_table("_kye_meta")?;
        if store.db.initialized {
            store.db.check_format_version()?;
            store.add_internal_tables()?;
            store.db.load_layouts()?;
            store.recover_runs()?;
        }
        Ok(store)
    }
}

impl Drop for PgStore {
    /// A dropped writer releases its runs' locks at once (the server would, when it notices
    /// the connection closed): readers then see a run it did not finish as interrupted.
    fn drop(&mut self) {
        let conn = self.db.conn_mut();
        if conn.running.is_empty() {
            return;
        }
        conn.running.clear();
        if let Some(client) = conn.client.as_mut().filter(|c| !c.is_closed()) {
            let _ = off_runtime(move || client.batch_execute("SELECT pg_advisory_unlock_all()"));
        }
    }
}

read_through!(PgStore, db);

#[cfg(test)]
mod tests {
    use super::*;

    /// The test server's spec, or `None` (outside CI) when nothing answers there.
    fn test_spec() -> Option<PgSpec> {
        let url = std::env::var("KYE_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let spec = PgSpec::parse(&url).ok()?;
        match Conn::open(&spec) {
            Ok(_) => Some(spec),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true: PostgreSQL at {url} does not answer: {e}")
            }
            Err(e) => {
                eprintln!("skipping: nothing answers at {url} ({e})");
                None
            }
        }
    }

    /// An enqueue lock the lost connection's backend still holds (here another session took
    /// it meanwhile) fails the reconnect at once, naming the run; once free, it is taken again.
    #[test]
    fn a_reconnect_takes_the_enqueue_lock_again_or_fails_naming_the_run() {
        let Some(spec) = test_spec() else { return };
        let class = super::queued::enqueue_lock_class(&format!("reconnect-{}", std::process::id()));
        let run = RunId(7);
        let mut conn = Conn::open(&spec).unwrap();
        let pid: i32 = conn
            .run(move |s| {
                s.client
                    .execute("SELECT pg_advisory_lock($1, 7)", &[&class])?;
                Ok(s.client.query_one("SELECT pg_backend_pid()", &[])?.get(0))
            })
            .unwrap();
        conn.hold_enqueue_lock(class, run);
        let mut other = spec.config().unwrap().connect(postgres::NoTls).unwrap();
        other
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        let holders = |c: &mut Client| -> Vec<i32> {
            c.query(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid \
                 AND objid = 7 AND objsubid = 2 AND granted",
                &[&class],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while holders(&mut other).contains(&pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the backend did not end"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        other
            .execute("SELECT pg_advisory_lock($1, 7)", &[&class])
            .unwrap();
        let ping = |conn: &mut Conn| conn.run(|s| s.client.batch_execute("SELECT 1"));
        assert!(ping(&mut conn).is_err(), "the connection was not lost");
        let e = ping(&mut conn).unwrap_err().to_string();
        assert!(
            e.contains("the enqueue lock of queued run 7 is still held"),
            "{e}"
        );
        other
            .execute("SELECT pg_advisory_unlock($1, 7)", &[&class])
            .unwrap();
        ping(&mut conn).unwrap();
        let mine: i32 = conn
            .run(|s| Ok(s.client.query_one("SELECT pg_backend_pid()", &[])?.get(0)))
            .unwrap();
        assert_eq!(holders(&mut other), [mine]);
        conn.forget_enqueue_lock(run);
    }

    #[test]
    fn sessions_keep_the_servers_durability() {
        let Some(spec) = test_spec() else { return };
        let show = |conn: &mut Conn| -> String {
            conn.run(|s| Ok(s.client.query_one("SHOW synchronous_commit", &[])?.get(0)))
                .unwrap()
        };
        let mut conn = Conn::open(&spec).unwrap();
        let mut plain = spec.config().unwrap().connect(postgres::NoTls).unwrap();
        let default: String = plain
            .query_one("SHOW synchronous_commit", &[])
            .unwrap()
            .get(0);
        assert_eq!(show(&mut conn), default);
    }
}
