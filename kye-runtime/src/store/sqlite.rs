//! The SQLite store (default): one table per model, typed columns, child tables for
//! multi-valued edges, provenance columns, and kye's own `_kye_*` tables.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use kye_lang::Schema;
use rusqlite::types::{ToSql, ToSqlOutput, Value as Sql, ValueRef};
use rusqlite::{
    params, CachedStatement, Connection, OpenFlags, OptionalExtension, TransactionBehavior,
};
use serde_json::{Map, Value};

use super::key::{as_integral, canonical_json, content_hash, cut};
use super::layout::{
    self, extract, Change, Col, EdgeLayout, ModelLayout, ModelSql, Plan, Prim, POSITION,
};
use super::lock::WriterLock;
use super::{
    drift_example, fold_path, DriftInfo, Filter, IndexKey, KeyOutcomeInfo, KeyStatus, NewRun,
    Provenance, RecordQuery, RejectInfo, RunCounts, RunEnd, RunId, RunInfo, RunStatus, StoreError,
    StoreRead, StoreWrite, Timestamp, WriteItem,
};

/// Version of kye's own tables in a database file; bumped (with a migration) when they change.
/// 2: layouts may store value objects in child tables (`value_object` edges), which a kye
/// reading only format 1 would misread. A format 1 store is raised to 2 by the first
/// `prepare` that stores a value object; until then older kye versions can still write it.
const FORMAT_VERSION: i64 = 2;

/// Nested records deeper than this are not followed when storing (guards against cycles).
const MAX_NESTING: usize = 32;

/// The SQLite store. See the module docs and `docs/store.md`.
///
/// Opened for writing ([`SqliteStore::open`]) it holds the writer lock `<file>.lock`; opened
/// with [`SqliteStore::open_read_only`] it reads alongside a writer (WAL mode).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// kye's own tables exist and the file is in WAL mode. A file without them (new, or a
    /// database kye did not create) is left untouched until [`StoreWrite::prepare`] has checked
    /// that kye's tables would not clash with its own.
    initialized: bool,
    layouts: HashMap<String, ModelLayout>,
    _lock: Option<WriterLock>,
}

/// Quotes an SQL identifier: `"` + name with `"` doubled + `"`.
pub(crate) fn q(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    names
        .into_iter()
        .map(|n| q(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn where_eq(prefix: &str, cols: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    cols.into_iter()
        .map(|c| format!("{prefix}{} = ?", q(c.as_ref())))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The writer lock of a database: `<file>.lock` next to the file's canonical path, so a
/// symbolic link to the file or to a directory above it leads to the same lock.
fn lock_path(db: &Path) -> PathBuf {
    let db = canonical(db);
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    db.with_file_name(name)
}

/// `db` with symbolic links, `.` and `..` resolved (the parent's, when the file does not
/// exist yet); `db` itself when neither can be resolved.
fn canonical(db: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(db) {
        return p;
    }
    let parent = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), db.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => db.to_path_buf(),
    }
}

/// `<db><suffix>`, e.g. SQLite's `kye.db-wal`.
fn wal_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// True when opening failed because SQLite could not create the `-shm`/`-wal` files a WAL
/// reader needs (no write access to the directory).
fn cannot_create_wal_files(e: &StoreError) -> bool {
    matches!(e, StoreError::Sqlite {
        source: rusqlite::Error::SqliteFailure(f, _), ..
    } if matches!(f.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly))
}

/// An SQLite URI opening `db` read-only as immutable (no locks, no `-shm`/`-wal`). Every
/// byte of the absolute path outside `[A-Za-z0-9/._~-]` is percent-encoded.
fn immutable_uri(db: &Path) -> String {
    let abs = canonical(db);
    let mut uri = String::from("file:");
    for &b in abs.to_string_lossy().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'~' | b'-') {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

/// Refuses to write a database file that has more than one name (hard links): the writer
/// lock belongs to a name, so a writer under another name would not see it.
fn check_single_name(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.nlink() > 1 {
                return Err(StoreError::HardLinked {
                    path: path.to_path_buf(),
                    links: m.nlink(),
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

const INTERNAL_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS _kye_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _kye_models (
    model       TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    layout      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _kye_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    status       TEXT NOT NULL,
    stored       INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0,
    missing      INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    skipped      INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    resumed_from INTEGER,
    pid          INTEGER
);
CREATE TABLE IF NOT EXISTS _kye_rejects (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  INTEGER NOT NULL,
    model   TEXT NOT NULL,
    key     TEXT,
    fetcher TEXT NOT NULL,
    reason  TEXT NOT NULL,
    errors  TEXT NOT NULL,
    payload TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS _kye_rejects_run ON _kye_rejects (run_id);
CREATE TABLE IF NOT EXISTS _kye_drift (
    model      TEXT NOT NULL,
    path       TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    first_run  INTEGER NOT NULL,
    last_run   INTEGER NOT NULL,
    example    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (model, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _kye_keys (
    run_id INTEGER NOT NULL,
    model  TEXT NOT NULL,
    key    TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at     TEXT NOT NULL,
    PRIMARY KEY (run_id, model, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _kye_keys_by_key ON _kye_keys (model, key, at);
"#;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for writing: WAL mode, kye's tables,
    /// the writer lock. Runs left `running` by a dead process are marked `interrupted`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                action: "cannot create directory",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let lock = WriterLock::acquire(&lock_path(&path), &path)?;
        check_single_name(&path)?;
        let conn = Connection::open_with_flags(
            &path,
            // Not SQLITE_OPEN_URI: a path is a path, even one starting with `file:`.
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut store = SqliteStore {
            conn,
            path,
            read_only: false,
            initialized: false,
            layouts: HashMap::new(),
            _lock: Some(lock),
        };
        store.sql(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.set_prepared_statement_cache_capacity(512);
            Ok(())
        })?;
        // A file without kye's tables is not written before `prepare` has checked it.
        if store.has_table("_kye_meta")? {
            store.init_writer()?;
            store.load_layouts()?;
            store.recover_runs()?;
        }
        Ok(store)
    }

    /// True when the database has a table of this name (compared as SQLite does, ignoring
    /// ASCII case).
    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        self.sql(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE)",
                [name],
                |r| r.get(0),
            )
        })
    }

    /// The name of the table matching `name` as the database spells it (`pokemon__TYPES`).
    fn table_name_as_stored(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.sql(|c| {
            c.query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
                [name],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Creates kye's tables (and switches to WAL) if that has not happened yet.
    fn ensure_initialized(&mut self) -> Result<(), StoreError> {
        if !self.initialized {
            self.init_writer()?;
        }
        Ok(())
    }

    /// Opens an existing database for reading only. Takes no lock.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::NotFound { path });
        }
        let mut store = match Self::open_reader(&path, false) {
            Ok(store) => store,
            // WAL mode needs `<file>-shm` and `<file>-wal`. When no writer runs they do not
            // exist, and a reader without write access to the directory cannot create them:
            // then the file alone is the whole store, read as immutable.
            Err(e) if cannot_create_wal_files(&e) && !wal_file(&path, "-wal").exists() => {
                Self::open_reader(&path, true)?
            }
            Err(e) => return Err(e),
        };
        store.initialized = true;
        store.check_format_version()?;
        store.load_layouts()?;
        Ok(store)
    }

    /// A read-only connection to `path` whose kye tables were found; `immutable` opens it
    /// without locks or WAL files (only when no writer can be running).
    fn open_reader(path: &Path, immutable: bool) -> Result<SqliteStore, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            read_only: true,
            initialized: false,
            layouts: HashMap::new(),
            _lock: None,
        };
        store.sql(|c| c.busy_timeout(std::time::Duration::from_secs(5)))?;
        if !store.has_table("_kye_models")? {
            return Err(StoreError::Corrupt {
                path: store.path.clone(),
                message: "this SQLite file has no kye tables (_kye_models); is it a kye store?"
                    .to_string(),
            });
        }
        Ok(store)
    }

    /// The underlying connection, for queries kye does not offer. Do not write through it.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    fn init_writer(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        // A newer kye's store is refused before anything is written to it.
        if self.has_table("_kye_meta")? {
            self.check_format_version()?;
        }
        let mode: String =
            self.sql(|c| c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path,
                message: format!("could not switch to WAL journal mode (got {mode})"),
            });
        }
        self.sql(|c| {
            c.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")?;
            c.execute_batch(&format!("BEGIN IMMEDIATE; {INTERNAL_TABLES} COMMIT;"))
        })?;
        if self.format_version()?.is_none() {
            self.sql(|c| {
                c.execute(
                    "INSERT INTO _kye_meta (key, value) VALUES ('format_version', ?1)",
                    // Format 1 until a value object is stored (see FORMAT_VERSION).
                    [1.to_string()],
                )
            })?;
        }
        self.initialized = true;
        Ok(())
    }

    /// The `format_version` recorded in `_kye_meta`, if any.
    fn format_version(&self) -> Result<Option<String>, StoreError> {
        if !self.has_table("_kye_meta")? {
            return Ok(None);
        }
        self.sql(|c| {
            c.query_row(
                "SELECT value FROM _kye_meta WHERE key = 'format_version'",
                [],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Refuses a store whose kye tables this kye cannot read.
    fn check_format_version(&self) -> Result<(), StoreError> {
        let Some(text) = self.format_version()? else {
            return Ok(());
        };
        let message = match text.trim().parse::<i64>() {
            Ok(v) if v <= FORMAT_VERSION => return Ok(()),
            Ok(v) => format!(
                "written by a newer kye (store format {v}, this kye reads up to {FORMAT_VERSION}); \
                 upgrade kye or use another database file"
            ),
            Err(_) => format!(
                "its store format {:?} (in _kye_meta) is not a version number; \
                 this is not a store this kye can read",
                cut(&text, 40)
            ),
        };
        Err(StoreError::Corrupt {
            path: self.path.clone(),
            message,
        })
    }

    fn load_layouts(&mut self) -> Result<(), StoreError> {
        let rows: Vec<(String, String)> = self.sql(|c| {
            let mut st = c.prepare("SELECT model, layout FROM _kye_models")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        self.layouts.clear();
        for (model, text) in rows {
            let layout: ModelLayout =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    message: format!("stored layout of model {model} is unreadable: {e}"),
                })?;
            self.layouts.insert(model, layout);
        }
        Ok(())
    }

    /// Marks runs left `running` as interrupted, with counts from their key outcomes.
    /// Safe because we hold the writer lock: no live process is running them.
    fn recover_runs(&mut self) -> Result<(), StoreError> {
        let ids: Vec<i64> = self.sql(|c| {
            let mut st = c.prepare("SELECT id FROM _kye_runs WHERE status = 'running'")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        for id in ids {
            let counts = self.outcome_counts(RunId(id))?;
            self.sql(|c| {
                c.execute(
                    "UPDATE _kye_runs SET status = 'interrupted', stored = ?2, rejected = ?3, missing = ?4, \
                     failed = ?5, skipped = ?6, error = ?7 WHERE id = ?1 AND status = 'running'",
                    params![
                        id,
                        counts.stored as i64,
                        counts.rejected as i64,
                        counts.missing as i64,
                        counts.failed as i64,
                        counts.skipped as i64,
                        super::DEAD_RUN
                    ],
                )
            })?;
        }
        Ok(())
    }

    fn layout(&self, model: &str) -> Result<&ModelLayout, StoreError> {
        self.layouts
            .get(model)
            .ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            Err(StoreError::ReadOnly {
                path: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------
// DDL

fn create_sql(l: &ModelLayout) -> Vec<String> {
    let key_names: HashSet<&str> = l.key.iter().map(|c| c.name.as_str()).collect();
    let mut cols = Vec::new();
    for e in l.edges.iter().filter(|e| !e.in_child_table()) {
        for c in &e.cols {
            let not_null = if key_names.contains(c.name.as_str()) {
                " NOT NULL"
            } else {
                ""
            };
            cols.push(format!("{} {}{not_null}", q(&c.name), c.prim.sql_type()));
        }
    }
    cols.push("\"_kye_run_id\" INTEGER NOT NULL".to_string());
    cols.push("\"_kye_fetcher\" TEXT NOT NULL".to_string());
    cols.push("\"_kye_fetched_at\" TEXT NOT NULL".to_string());
    cols.push("\"_kye_hash\" TEXT NOT NULL".to_string());
    cols.push(format!(
        "PRIMARY KEY ({})",
        list(l.key.iter().map(|c| &c.name))
    ));
    for u in &l.uniques {
        cols.push(format!("UNIQUE ({})", list(&u.cols)));
    }
    let mut out = vec![format!(
        "CREATE TABLE {} (\n    {}\n)",
        q(&l.table),
        cols.join(",\n    ")
    )];
    for e in l.edges.iter().filter(|e| e.in_child_table()) {
        out.push(child_create_sql(l, e));
    }
    out
}

fn child_create_sql(l: &ModelLayout, e: &EdgeLayout) -> String {
    let table = e.table.as_deref().unwrap_or_default();
    let mut cols = Vec::new();
    for (p, k) in l.parent_cols.iter().zip(&l.key) {
        cols.push(format!("{} {} NOT NULL", q(p), k.prim.sql_type()));
    }
    cols.push(format!("{} INTEGER NOT NULL", q(POSITION)));
    for c in &e.cols {
        cols.push(format!("{} {}", q(&c.name), c.prim.sql_type()));
    }
    let mut pk: Vec<&str> = l.parent_cols.iter().map(String::as_str).collect();
    pk.push(POSITION);
    cols.push(format!("PRIMARY KEY ({})", list(pk)));
    // Child rows are small and always read by parent key: cluster them by it.
    format!(
        "CREATE TABLE {} (\n    {}\n) WITHOUT ROWID",
        q(table),
        cols.join(",\n    ")
    )
}

/// The statements of a layout (built once, then cached in the layout).
fn model_sql(l: &ModelLayout) -> &ModelSql {
    l.sql.0.get_or_init(|| {
        let key_cols: Vec<&str> = l.key.iter().map(|c| c.name.as_str()).collect();
        let unique_selects = l
            .uniques
            .iter()
            .map(|u| {
                format!(
                    "SELECT {} FROM {} WHERE {}",
                    list(&key_cols),
                    q(&l.table),
                    where_eq("", &u.cols)
                )
            })
            .collect();
        let delete = format!(
            "DELETE FROM {} WHERE {}",
            q(&l.table),
            where_eq("", &key_cols)
        );
        let multi: Vec<&EdgeLayout> = l.edges.iter().filter(|e| e.in_child_table()).collect();
        let child_deletes = multi
            .iter()
            .map(|e| {
                format!(
                    "DELETE FROM {} WHERE {}",
                    q(e.table.as_deref().unwrap_or_default()),
                    where_eq("", &l.parent_cols)
                )
            })
            .collect();
        let mut names: Vec<&str> = l
            .edges
            .iter()
            .filter(|e| !e.in_child_table())
            .flat_map(|e| e.cols.iter().map(|c| c.name.as_str()))
            .collect();
        names.extend(layout::PROVENANCE);
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            q(&l.table),
            list(&names),
            placeholders(names.len())
        );
        let stored_row = format!(
            "SELECT {} FROM {} WHERE {}",
            list(&names),
            q(&l.table),
            where_eq("", &key_cols)
        );
        let child_inserts = multi
            .iter()
            .map(|e| {
                let mut names: Vec<&str> = l.parent_cols.iter().map(String::as_str).collect();
                names.push(POSITION);
                names.extend(e.cols.iter().map(|c| c.name.as_str()));
                format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    q(e.table.as_deref().unwrap_or_default()),
                    list(&names),
                    placeholders(names.len())
                )
            })
            .collect();
        let unique_positions = l
            .uniques
            .iter()
            .map(|u| {
                u.cols
                    .iter()
                    .map(|c| names.iter().position(|n| n == c))
                    .collect()
            })
            .collect();
        ModelSql {
            unique_selects,
            unique_positions,
            delete,
            child_deletes,
            // Only a stored key is "nothing to do": a clash on a secondary index is an error.
            insert_new: format!("{insert} ON CONFLICT ({}) DO NOTHING", list(&key_cols)),
            insert,
            child_inserts,
            stored_row,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Values

/// A JSON value as an SQL value of the column's type, or why it does not fit.
fn to_sql(v: &Value, prim: Prim) -> Result<Sql, String> {
    Ok(match (v, prim) {
        (Value::Null, _) => Sql::Null,
        (_, Prim::Json) => Sql::Text(canonical_json(v)),
        (Value::String(s), Prim::String) => Sql::Text(s.clone()),
        (Value::Number(n), Prim::String) => Sql::Text(canonical_json(&Value::Number(n.clone()))),
        (Value::Bool(b), Prim::String) => Sql::Text(b.to_string()),
        (Value::Number(n), Prim::Number) => number_sql(n),
        (Value::String(s), Prim::Number) => {
            match serde_json::from_str::<serde_json::Number>(s.trim()) {
                Ok(n) => number_sql(&n),
                Err(_) => match s.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => match serde_json::Number::from_f64(f) {
                        Some(n) => number_sql(&n),
                        None => {
                            return Err(format!(
                                "expected Number, got {}",
                                cut(&canonical_json(v), 80)
                            ))
                        }
                    },
                    _ => {
                        return Err(format!(
                            "expected Number, got {}",
                            cut(&canonical_json(v), 80)
                        ))
                    }
                },
            }
        }
        (Value::Bool(b), Prim::Boolean) => Sql::Integer(i64::from(*b)),
        (Value::String(s), Prim::Boolean) if s.eq_ignore_ascii_case("true") => Sql::Integer(1),
        (Value::String(s), Prim::Boolean) if s.eq_ignore_ascii_case("false") => Sql::Integer(0),
        _ => {
            return Err(format!(
                "expected {}, got {}",
                prim.name(),
                cut(&canonical_json(v), 80)
            ))
        }
    })
}

/// One SQL argument of a record being stored: text borrowed from the record, or a value
/// converted from it. Binding it copies nothing until SQLite copies the bytes.
#[derive(Debug, Clone, PartialEq)]
enum Arg<'a> {
    Text(&'a str),
    Value(Sql),
}

impl Arg<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Arg::Value(Sql::Null))
    }

    /// An owned copy (for messages and comparisons on error paths).
    fn to_sql_value(&self) -> Sql {
        match self {
            Arg::Text(s) => Sql::Text((*s).to_string()),
            Arg::Value(v) => v.clone(),
        }
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Value(v) => ValueRef::from(v),
        }))
    }
}

/// Owned copies of `args`.
fn to_sql_values(args: &[Arg<'_>]) -> Vec<Sql> {
    args.iter().map(Arg::to_sql_value).collect()
}

/// [`to_sql`] borrowing strings stored as text instead of copying them.
fn to_arg(v: &Value, prim: Prim) -> Result<Arg<'_>, String> {
    match (v, prim) {
        (Value::String(s), Prim::String) => Ok(Arg::Text(s)),
        _ => to_sql(v, prim).map(Arg::Value),
    }
}

fn number_sql(n: &serde_json::Number) -> Sql {
    match as_integral(n) {
        Some(i) => Sql::Integer(i),
        None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// An SQL value read back as JSON.
fn from_sql(v: ValueRef<'_>, prim: Prim) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => match prim {
            Prim::Boolean => Value::Bool(i != 0),
            Prim::String => Value::String(i.to_string()),
            Prim::Number | Prim::Json => Value::from(i),
        },
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(t) if prim == Prim::Json => serde_json::from_slice(t)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

fn sql_to_json(v: &Sql) -> Value {
    match v {
        Sql::Null => Value::Null,
        Sql::Integer(i) => Value::from(*i),
        Sql::Real(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Sql::Text(t) => Value::String(t.clone()),
        Sql::Blob(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

/// The value an edge has in a record object (by name, else by title).
fn edge_value<'a>(obj: &'a Map<String, Value>, e: &EdgeLayout) -> Option<&'a Value> {
    obj.get(&e.name)
        .or_else(|| e.title.as_ref().and_then(|t| obj.get(t)))
        .filter(|v| !v.is_null())
}

/// The SQL values of an edge's columns for one value of the edge.
fn edge_cols_sql(model: &str, e: &EdgeLayout, v: Option<&Value>) -> Result<Vec<Sql>, StoreError> {
    let mut args = Vec::with_capacity(e.cols.len());
    edge_args(model, e, v, &mut args)?;
    Ok(to_sql_values(&args))
}

/// Appends the arguments of an edge's columns for one value of the edge to `out`.
fn edge_args<'a>(
    model: &str,
    e: &EdgeLayout,
    v: Option<&'a Value>,
    out: &mut Vec<Arg<'a>>,
) -> Result<(), StoreError> {
    let single = e.cols.len() == 1;
    for c in &e.cols {
        let x = v.and_then(|v| extract(v, &c.path, single));
        let arg = match x {
            None => Arg::Value(Sql::Null),
            Some(Value::Object(_)) | Some(Value::Array(_)) if c.prim != Prim::Json => {
                return Err(StoreError::InvalidValue {
                    model: model.to_string(),
                    key: String::new(),
                    edge: e.name.clone(),
                    message: format!(
                        "expected {}, got {}",
                        if c.path.is_empty() {
                            c.prim.name().to_string()
                        } else {
                            format!("{} at {}", c.prim.name(), c.path.join("."))
                        },
                        cut(&canonical_json(x.unwrap_or(&Value::Null)), 80)
                    ),
                })
            }
            Some(x) => to_arg(x, c.prim).map_err(|message| StoreError::InvalidValue {
                model: model.to_string(),
                key: String::new(),
                edge: e.name.clone(),
                message,
            })?,
        };
        out.push(arg);
    }
    Ok(())
}

/// Items of a multi-valued edge's value (an array; a lone value counts as one item).
fn items(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    let all: &[Value] = match v {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => std::slice::from_ref(other),
    };
    all.iter().filter(|x| !x.is_null())
}

/// True when a nested value carries a record of its own (more than index edges).
fn is_full_record(target: &ModelLayout, v: &Value) -> bool {
    match v {
        Value::Object(o) => o.keys().any(|k| {
            !is_index_edge(target, k)
                && target
                    .edges
                    .iter()
                    .any(|e| &e.name == k || e.title.as_deref() == Some(k))
        }),
        _ => false,
    }
}

/// `id = 25` or `(year, month) = (2024, 1)`, values cut to 100 characters (for messages).
fn key_display(l: &ModelLayout, vals: &[Sql]) -> String {
    let show = |v: &Sql| cut(&canonical_json(&sql_to_json(v)), 100);
    if l.key.len() == 1 {
        format!("{} = {}", l.key[0].name, show(&vals[0]))
    } else {
        format!(
            "({}) = ({})",
            l.key
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            vals.iter().map(show).collect::<Vec<_>>().join(", ")
        )
    }
}

/// Sets the record key of a value error (computed only when there is an error).
fn with_key(e: StoreError, key: impl FnOnce() -> String) -> StoreError {
    match e {
        StoreError::InvalidValue {
            model,
            key: k,
            edge,
            message,
        } if k.is_empty() => StoreError::InvalidValue {
            model,
            key: key(),
            edge,
            message,
        },
        other => other,
    }
}

/// True when `edge` is an edge of any index of `l` (a nested object with only these is a
/// reference). Indexes have few edges: comparing them beats building a set per value.
fn is_index_edge(l: &ModelLayout, edge: &str) -> bool {
    l.key_edges
        .iter()
        .chain(l.uniques.iter().flat_map(|u| u.edges.iter()))
        .any(|e| e == edge)
}

/// True when storing this record also stores nested records (which then needs a savepoint,
/// because they are written before the record's own checks).
fn has_nested_records(layouts: &HashMap<String, ModelLayout>, model: &str, value: &Value) -> bool {
    let (Some(l), Some(obj)) = (layouts.get(model), value.as_object()) else {
        return false;
    };
    l.edges.iter().any(|e| {
        // Edges without a target model first: no lookup in the record for them. Value
        // objects are rows of the record's own child tables.
        let Some(target) = e.target.as_deref().filter(|_| !e.value_object) else {
            return false;
        };
        let Some(v) = edge_value(obj, e) else {
            return false;
        };
        let Some(tl) = layouts.get(target) else {
            return false;
        };
        let nested: Vec<&Value> = if e.multiple {
            items(Some(v)).collect()
        } else {
            vec![v]
        };
        nested.into_iter().any(|n| is_full_record(tl, n))
    })
}

/// The statements one `write_batch` runs, each prepared once per batch.
///
/// `prepare_cached` hashes and compares the whole SQL text on every call; here a statement
/// is found by the address of its text. That is sound because every text is borrowed for
/// `'s` (the layouts' statements, string literals), so none is freed and its address reused
/// while the batch runs.
struct Statements<'c, 's> {
    conn: &'c Connection,
    prepared: Vec<(&'s str, CachedStatement<'c>)>,
}

impl<'c, 's> Statements<'c, 's> {
    fn new(conn: &'c Connection) -> Self {
        Statements {
            conn,
            prepared: Vec::new(),
        }
    }

    /// The statement of `sql`, prepared (from the connection's cache) on first use.
    fn get(&mut self, sql: &'s str) -> rusqlite::Result<&mut CachedStatement<'c>> {
        let i = match self
            .prepared
            .iter()
            .position(|(s, _)| std::ptr::eq(*s, sql))
        {
            Some(i) => i,
            None => {
                let st = self.conn.prepare_cached(sql)?;
                self.prepared.push((sql, st));
                self.prepared.len() - 1
            }
        };
        Ok(&mut self.prepared[i].1)
    }

    /// Runs `sql` with `args`: the number of rows changed.
    fn execute<P: rusqlite::Params>(&mut self, sql: &'s str, args: P) -> rusqlite::Result<usize> {
        self.get(sql)?.execute(args)
    }
}

/// The text of the last timestamp formatted, reused while timestamps repeat (a batch's
/// records and outcomes mostly share a few milliseconds).
#[derive(Default)]
struct TimeText {
    last: Option<(Timestamp, String)>,
}

impl TimeText {
    fn get(&mut self, t: Timestamp) -> &str {
        match &mut self.last {
            Some((at, text)) if *at == t => {}
            last => *last = Some((t, t.to_string())),
        }
        self.last
            .as_ref()
            .map(|(_, s)| s.as_str())
            .unwrap_or_default()
    }
}

/// True when an SQLite error is a `UNIQUE` constraint failing.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The child rows of one multi-valued edge of a record: `items` rows of `e.cols.len()`
/// arguments each, flattened.
struct ChildRows<'a> {
    items: usize,
    args: Vec<Arg<'a>>,
}

/// Wraps an SQLite error of the database at `path`.
fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the records of one batch inside its transaction.
struct BatchWriter<'c, 's> {
    st: Statements<'c, 's>,
    path: &'s Path,
    layouts: &'s HashMap<String, ModelLayout>,
    times: TimeText,
}

impl<'c, 's> BatchWriter<'c, 's> {
    /// Stores one record (and the nested records it carries) inside the caller's transaction.
    ///
    /// Every item error (missing key, a value that does not fit, an index clash) is found
    /// before this record's own first write, or by that write (a secondary index clash
    /// fails the insert, which SQLite rolls back). Errors after that point are fatal (they
    /// abort the batch). Nested records are written first, so a caller storing a record with
    /// nested records wraps it in a savepoint; a record without them needs none.
    fn store_record(
        &mut self,
        model: &str,
        value: &Value,
        prov: &Provenance,
        depth: usize,
    ) -> Result<(), StoreError> {
        let layouts = self.layouts;
        let sqlerr = sql_error(self.path);
        let l = layouts.get(model).ok_or_else(|| StoreError::UnknownModel {
            model: model.to_string(),
        })?;
        let obj = super::record_object(model, value)?;

        // 1. Compute everything: key, inline columns, child rows.
        let mut key_vals = Vec::with_capacity(l.key.len());
        for e in l.key_edges.iter() {
            let edge = l.edge(e).ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })?;
            let start = key_vals.len();
            edge_args(model, edge, edge_value(obj, edge), &mut key_vals)?;
            if key_vals[start..].iter().any(Arg::is_null) {
                return Err(StoreError::MissingKey {
                    model: model.to_string(),
                    edge: e.clone(),
                });
            }
        }
        let key_text = || key_display(l, &to_sql_values(&key_vals));
        // The inserted row: inline columns in edge order, then provenance.
        let mut row: Vec<Arg> = Vec::with_capacity(l.edges.len() + layout::PROVENANCE.len());
        let mut child_rows: Vec<ChildRows> = Vec::new();
        for e in l.edges.iter() {
            let v = edge_value(obj, e);
            if e.in_child_table() {
                let mut rows = ChildRows {
                    items: 0,
                    args: Vec::new(),
                };
                for item in items(v) {
                    edge_args(model, e, Some(item), &mut rows.args)
                        .map_err(|x| with_key(x, key_text))?;
                    rows.items += 1;
                }
                child_rows.push(rows);
            } else {
                edge_args(model, e, v, &mut row).map_err(|x| with_key(x, key_text))?;
            }
        }

        // 2. Nested records of their own model (written now; the caller holds a savepoint).
        if depth < MAX_NESTING {
            for e in l.edges.iter() {
                let Some(target) = e.target.as_deref().filter(|_| !e.value_object) else {
                    continue;
                };
                let Some(v) = edge_value(obj, e) else {
                    continue;
                };
                let Some(tl) = layouts.get(target) else {
                    continue;
                };
                let nested: Vec<&Value> = if e.multiple {
                    items(Some(v)).collect()
                } else {
                    vec![v]
                };
                for n in nested {
                    if is_full_record(tl, n) {
                        self.store_record(target, n, prov, depth + 1)?;
                    }
                }
            }
        }

        // 3. Insert, or replace the stored row and its child rows. Past the first
        // statement nothing can fail for this record's data any more: any error aborts the
        // batch.
        let sql = model_sql(l);
        row.push(Arg::Value(Sql::Integer(prov.run.0)));
        row.push(Arg::Text(&prov.fetcher));
        row.push(Arg::Value(Sql::Text(
            self.times.get(prov.fetched_at).to_string(),
        )));
        row.push(Arg::Value(Sql::Text(content_hash(value))));
        // A new key takes one statement; a value of a secondary index held by another
        // record fails it (and SQLite undoes it).
        match self
            .st
            .execute(&sql.insert_new, rusqlite::params_from_iter(&row))
        {
            Ok(0) => {
                // The key is stored: replace it, unless the new values of its secondary
                // indexes are held by other records, or it is a nested record contradicting
                // the one another record of this run nested under the same key.
                if depth > 0 {
                    self.check_nested(l, &row, &key_vals, prov.run)?;
                }
                self.check_uniques(l, &row, &key_vals)?;
                let keys = || rusqlite::params_from_iter(&key_vals);
                self.st.execute(&sql.delete, keys()).map_err(&sqlerr)?;
                for delete in &sql.child_deletes {
                    self.st.execute(delete, keys()).map_err(&sqlerr)?;
                }
                self.st
                    .execute(&sql.insert, rusqlite::params_from_iter(&row))
                    .map_err(&sqlerr)?;
            }
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                self.check_uniques(l, &row, &key_vals)?;
                // No other record holds the values (cannot happen): the error is fatal.
                return Err(sqlerr(e));
            }
            Err(e) => return Err(sqlerr(e)),
        }
        let position = |pos: usize| Arg::Value(Sql::Integer(pos as i64));
        for ((rows, insert), e) in child_rows
            .iter()
            .zip(&sql.child_inserts)
            .zip(l.edges.iter().filter(|e| e.in_child_table()))
        {
            let width = e.cols.len();
            for pos in 0..rows.items {
                let pos_arg = position(pos);
                let item = &rows.args[pos * width..(pos + 1) * width];
                let args = key_vals.iter().chain(std::iter::once(&pos_arg)).chain(item);
                self.st
                    .execute(insert, rusqlite::params_from_iter(args))
                    .map_err(&sqlerr)?;
            }
        }
        Ok(())
    }

    /// A nested record whose key this run already stored with other content: two parents
    /// disagree about one record, so the index does not identify it (or the source is
    /// inconsistent). Replacing it would silently rewrite what the first parent said.
    fn check_nested(
        &mut self,
        l: &'s ModelLayout,
        row: &[Arg<'_>],
        key_vals: &[Arg<'_>],
        run: RunId,
    ) -> Result<(), StoreError> {
        let sql = model_sql(l);
        let inline = row.len() - layout::PROVENANCE.len();
        let stored: Option<Vec<Sql>> = self
            .st
            .get(&sql.stored_row)
            .and_then(|st| {
                st.query_row(rusqlite::params_from_iter(key_vals.iter()), |r| {
                    (0..row.len()).map(|i| r.get::<_, Sql>(i)).collect()
                })
                .optional()
            })
            .map_err(sql_error(self.path))?;
        let Some(stored) = stored else {
            return Ok(());
        };
        let same_run = stored[inline] == Sql::Integer(run.0);
        let hash = &stored[inline + 3];
        if !same_run || *hash == row[inline + 3].to_sql_value() {
            return Ok(());
        }
        let show = |v: &Sql| cut(&canonical_json(&sql_to_json(v)), 100);
        let cols = l
            .edges
            .iter()
            .filter(|e| !e.in_child_table())
            .flat_map(|e| e.cols.iter().map(move |c| (e, c)));
        let differs = cols
            .zip(row.iter().zip(&stored))
            .find(|(_, (new, old))| {
                canonical_json(&sql_to_json(&new.to_sql_value()))
                    != canonical_json(&sql_to_json(old))
            })
            .map(|((e, _), (new, old))| {
                format!(
                    "edge {}: {} here, {} before",
                    e.name,
                    show(&new.to_sql_value()),
                    show(old)
                )
            })
            .unwrap_or_else(|| "the values of its multi-valued edges differ".to_string());
        Err(StoreError::NestedConflict {
            model: l.model.clone(),
            key: key_display(l, &to_sql_values(key_vals)),
            differs,
        })
    }

    /// Secondary indexes: a value held by another record is an error, not an overwrite.
    /// `row` holds the record's inline columns first; `key_vals` its primary key.
    fn check_uniques(
        &mut self,
        l: &'s ModelLayout,
        row: &[Arg<'_>],
        key_vals: &[Arg<'_>],
    ) -> Result<(), StoreError> {
        let sql = model_sql(l);
        const NULL: Arg<'static> = Arg::Value(Sql::Null);
        for ((u, select), positions) in l
            .uniques
            .iter()
            .zip(&sql.unique_selects)
            .zip(&sql.unique_positions)
        {
            let vals: Vec<&Arg> = positions
                .iter()
                .map(|p| p.and_then(|i| row.get(i)).unwrap_or(&NULL))
                .collect();
            if vals.iter().any(|v| v.is_null()) {
                continue;
            }
            let existing: Option<Vec<Sql>> = self
                .st
                .get(select)
                .and_then(|st| {
                    st.query_row(rusqlite::params_from_iter(vals.iter()), |r| {
                        (0..l.key.len()).map(|i| r.get::<_, Sql>(i)).collect()
                    })
                    .optional()
                })
                .map_err(sql_error(self.path))?;
            let Some(existing) = existing else {
                continue;
            };
            let key = to_sql_values(key_vals);
            let same = existing
                .iter()
                .zip(&key)
                .all(|(a, b)| canonical_json(&sql_to_json(a)) == canonical_json(&sql_to_json(b)));
            if !same {
                return Err(StoreError::IndexConflict {
                    model: l.model.clone(),
                    index: format!("({})", u.edges.join(", ")),
                    value: vals
                        .iter()
                        .map(|v| cut(&canonical_json(&sql_to_json(&v.to_sql_value())), 100))
                        .collect::<Vec<_>>()
                        .join(", "),
                    existing: key_display(l, &existing),
                    incoming: key_display(l, &key),
                });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reading records

/// Builds a reference value `{"name": "grass"}` (nested for composite keys) from columns.
fn ref_value(cols: &[Col], vals: &[Value]) -> Value {
    if vals.iter().all(Value::is_null) {
        return Value::Null;
    }
    let mut root = Map::new();
    for (c, v) in cols.iter().zip(vals) {
        let mut node = &mut root;
        for (i, p) in c.path.iter().enumerate() {
            if i + 1 == c.path.len() {
                node.insert(p.clone(), v.clone());
            } else {
                let next = node
                    .entry(p.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                node = match next {
                    Value::Object(m) => m,
                    _ => unreachable!(),
                };
            }
        }
    }
    Value::Object(root)
}

/// What a query returns: how many rows, how deep, with or without provenance.
#[derive(Clone, Copy)]
struct Shape {
    limit: Option<usize>,
    depth: usize,
    provenance: bool,
}

struct Reader<'a> {
    conn: &'a Connection,
    path: &'a Path,
    layouts: &'a HashMap<String, ModelLayout>,
}

impl Reader<'_> {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn select_cols(l: &ModelLayout) -> Vec<(&EdgeLayout, &Col)> {
        l.edges
            .iter()
            .filter(|e| !e.in_child_table())
            .flat_map(|e| e.cols.iter().map(move |c| (e, c)))
            .collect()
    }

    /// Rows of `l` matching `where_sql`, as records.
    fn query(
        &self,
        l: &ModelLayout,
        where_sql: &str,
        args: &[Sql],
        shape: Shape,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        self.query_each(l, where_sql, args, shape, visiting, &mut |v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Reader::query`] handing each record to `each` as its row is read: memory does not
    /// grow with the number of records.
    fn query_each(
        &self,
        l: &ModelLayout,
        where_sql: &str,
        args: &[Sql],
        shape: Shape,
        visiting: &mut Vec<(String, String)>,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Shape {
            limit,
            depth,
            provenance,
        } = shape;
        let cols = Self::select_cols(l);
        let mut names: Vec<&str> = cols.iter().map(|(_, c)| c.name.as_str()).collect();
        names.extend(layout::PROVENANCE);
        let mut sql = format!("SELECT {} FROM {} AS t", list(&names), q(&l.table));
        if !where_sql.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(where_sql);
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(
            &l.key
                .iter()
                .map(|c| format!("t.{}", q(&c.name)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as usize)));
        }
        let mut st = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let mut rows = st
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<Value>> {
                let mut out = Vec::with_capacity(names.len());
                for (i, (_, c)) in cols.iter().enumerate() {
                    out.push(from_sql(r.get_ref(i)?, c.prim));
                }
                let n = cols.len();
                out.push(from_sql(r.get_ref(n)?, Prim::Number));
                for j in 1..4 {
                    out.push(from_sql(r.get_ref(n + j)?, Prim::String));
                }
                Ok(out)
            };
            let row = read(r).map_err(|e| self.err(e))?;
            each(self.build(l, &cols, &row, depth, provenance, visiting)?)?;
        }
        Ok(())
    }

    fn build(
        &self,
        l: &ModelLayout,
        cols: &[(&EdgeLayout, &Col)],
        row: &[Value],
        depth: usize,
        provenance: bool,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Value, StoreError> {
        let mut obj = Map::new();
        let key_vals: Vec<Sql> = l
            .key
            .iter()
            .map(|k| {
                let i = cols.iter().position(|(_, c)| c.name == k.name).unwrap_or(0);
                json_to_sql(&row[i], k.prim)
            })
            .collect();
        let me = (
            l.model.clone(),
            canonical_json(&Value::Array(key_vals.iter().map(sql_to_json).collect())),
        );
        visiting.push(me);
        for e in &l.edges {
            if e.in_child_table() {
                let table = e.table.as_deref().unwrap_or_default();
                let sql = format!(
                    "SELECT {} FROM {} WHERE {} ORDER BY {}",
                    list(e.cols.iter().map(|c| &c.name)),
                    q(table),
                    where_eq("", &l.parent_cols),
                    q(POSITION)
                );
                let item_rows: Vec<Vec<Value>> = {
                    let mut st = self.conn.prepare_cached(&sql).map_err(|x| self.err(x))?;
                    let mapped = st
                        .query_map(rusqlite::params_from_iter(key_vals.iter()), |r| {
                            (0..e.cols.len())
                                .map(|i| Ok(from_sql(r.get_ref(i)?, e.cols[i].prim)))
                                .collect()
                        })
                        .map_err(|x| self.err(x))?;
                    mapped.collect::<Result<_, _>>().map_err(|x| self.err(x))?
                };
                let mut arr = Vec::with_capacity(item_rows.len());
                for vals in item_rows {
                    arr.push(if e.value_object {
                        value_object_out(e, vals)
                    } else {
                        self.edge_out(e, &vals, depth, visiting)?
                    });
                }
                if e.multiple {
                    obj.insert(e.name.clone(), Value::Array(arr));
                } else {
                    obj.insert(
                        e.name.clone(),
                        arr.into_iter().next().unwrap_or(Value::Null),
                    );
                }
            } else {
                let vals: Vec<Value> = cols
                    .iter()
                    .enumerate()
                    .filter(|(_, (ce, _))| ce.name == e.name)
                    .map(|(i, _)| row[i].clone())
                    .collect();
                obj.insert(e.name.clone(), self.edge_out(e, &vals, depth, visiting)?);
            }
        }
        visiting.pop();
        if provenance {
            let n = cols.len();
            let mut p = Map::new();
            p.insert("run".into(), row[n].clone());
            p.insert("fetcher".into(), row[n + 1].clone());
            p.insert("fetched_at".into(), row[n + 2].clone());
            p.insert("hash".into(), row[n + 3].clone());
            obj.insert("_kye".into(), Value::Object(p));
        }
        Ok(Value::Object(obj))
    }

    /// One value of an edge: a primitive, or a reference (embedded when stored and depth allows).
    fn edge_out(
        &self,
        e: &EdgeLayout,
        vals: &[Value],
        depth: usize,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Value, StoreError> {
        let Some(target) = e.target.as_deref() else {
            return Ok(vals.first().cloned().unwrap_or(Value::Null));
        };
        let reference = ref_value(&e.cols, vals);
        if depth == 0 || reference.is_null() {
            return Ok(reference);
        }
        let Some(tl) = self.layouts.get(target) else {
            return Ok(reference);
        };
        let me = (
            target.to_string(),
            canonical_json(&Value::Array(vals.to_vec())),
        );
        if visiting.contains(&me) {
            return Ok(reference);
        }
        let args: Vec<Sql> = tl
            .key
            .iter()
            .zip(vals)
            .map(|(k, v)| json_to_sql(v, k.prim))
            .collect();
        let where_sql = where_eq("t.", tl.key.iter().map(|c| &c.name));
        let mut found = self.query(
            tl,
            &where_sql,
            &args,
            Shape {
                limit: Some(1),
                depth: depth - 1,
                provenance: false,
            },
            visiting,
        )?;
        Ok(found.pop().unwrap_or(reference))
    }
}

/// A value object read back from its child row: its edges with a value, by name (as the
/// validator gives them: an edge without a value is left out).
fn value_object_out(e: &EdgeLayout, vals: Vec<Value>) -> Value {
    Value::Object(
        e.cols
            .iter()
            .zip(vals)
            .filter(|(_, v)| !v.is_null())
            .map(|(c, v)| (c.name.clone(), v))
            .collect(),
    )
}

fn json_to_sql(v: &Value, prim: Prim) -> Sql {
    to_sql(v, prim).unwrap_or(Sql::Null)
}

/// The key columns and values of `key` for one of `l`'s indexes.
fn index_lookup(l: &ModelLayout, key: &IndexKey) -> Result<(Vec<String>, Vec<Sql>), StoreError> {
    let mut want: Vec<&str> = key.edges.iter().map(String::as_str).collect();
    want.sort_unstable();
    let matches = |edges: &[String]| {
        let mut e: Vec<&str> = edges.iter().map(String::as_str).collect();
        e.sort_unstable();
        e == want
    };
    if !matches(&l.key_edges) && !l.uniques.iter().any(|u| matches(&u.edges)) {
        return Err(StoreError::InvalidFilter {
            model: l.model.clone(),
            message: format!(
                "({}) is not an index of {}; its indexes are {}",
                key.edges.join(", "),
                l.model,
                std::iter::once(&l.key_edges)
                    .chain(l.uniques.iter().map(|u| &u.edges))
                    .map(|ix| format!("({})", ix.join(", ")))
                    .collect::<Vec<_>>()
                    .join("")
            ),
        });
    }
    let obj: Map<String, Value> = key
        .edges
        .iter()
        .cloned()
        .zip(key.values.iter().cloned())
        .collect();
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    for name in &key.edges {
        let e = l.edge(name).ok_or_else(|| StoreError::UnknownModel {
            model: l.model.clone(),
        })?;
        let v = edge_cols_sql(&l.model, e, obj.get(name))
            .map_err(|x| with_key(x, || key.to_string()))?;
        for (c, s) in e.cols.iter().zip(v) {
            cols.push(c.name.clone());
            vals.push(s);
        }
    }
    Ok((cols, vals))
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    let ts = |s: Option<String>| s.and_then(|s| s.parse::<Timestamp>().ok());
    let status: String = r.get(4)?;
    Ok(RunInfo {
        id: RunId(r.get(0)?),
        request: r.get(1)?,
        started_at: ts(r.get(2)?).unwrap_or(Timestamp::from_unix_millis(0)),
        ended_at: ts(r.get(3)?),
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        counts: RunCounts {
            stored: r.get::<_, i64>(5)? as u64,
            rejected: r.get::<_, i64>(6)? as u64,
            missing: r.get::<_, i64>(7)? as u64,
            failed: r.get::<_, i64>(8)? as u64,
            skipped: r.get::<_, i64>(9)? as u64,
        },
        error: r.get(10)?,
        resumed_from: r.get::<_, Option<i64>>(11)?.map(RunId),
    })
}

const RUN_COLS: &str =
    "id, request, started_at, ended_at, status, stored, rejected, missing, failed, skipped, error, resumed_from";

impl SqliteStore {
    fn live_counts(&self, mut runs: Vec<RunInfo>) -> Result<Vec<RunInfo>, StoreError> {
        for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
            r.counts = self.outcome_counts(r.id)?;
        }
        // A reader is told a run is dead by the writer lock: when no writer holds it, a run
        // still `running` (read again, after asking the lock) belongs to a process that died.
        if self.read_only
            && runs.iter().any(|r| r.status == RunStatus::Running)
            && super::lock::writer_alive(&lock_path(&self.path)) == Some(false)
        {
            for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
                let now = self.sql(|c| {
                    c.prepare_cached(&format!("SELECT {RUN_COLS} FROM _kye_runs WHERE id = ?1"))?
                        .query_row([r.id.0], run_from_row)
                        .optional()
                })?;
                match now {
                    Some(now) if now.status == RunStatus::Running => {
                        super::mark_dead(r);
                    }
                    Some(now) => *r = now,
                    None => {}
                }
            }
        }
        Ok(runs)
    }

    fn apply_plan(
        tx: &Connection,
        old: Option<&ModelLayout>,
        new: &ModelLayout,
    ) -> Result<(), (Option<String>, String, rusqlite::Error)> {
        let wrap = |e: rusqlite::Error| (None, String::new(), e);
        match old {
            None => {
                for s in create_sql(new) {
                    tx.execute_batch(&s).map_err(wrap)?;
                }
            }
            Some(old) => match layout::plan(old, new) {
                Plan::Same => {}
                Plan::Migrate(changes) => {
                    for c in changes {
                        match c {
                            Change::AddColumns(e) => {
                                for col in &e.cols {
                                    tx.execute_batch(&format!(
                                        "ALTER TABLE {} ADD COLUMN {} {}",
                                        q(&new.table),
                                        q(&col.name),
                                        col.prim.sql_type()
                                    ))
                                    .map_err(wrap)?;
                                }
                            }
                            Change::AddTable(e) => {
                                tx.execute_batch(&child_create_sql(new, &e)).map_err(wrap)?;
                            }
                            Change::Relax => {}
                        }
                    }
                }
                Plan::Refuse(edge, message) => {
                    // Nothing stored yet: rebuild the tables instead of refusing.
                    let mut empty = true;
                    for t in old.tables() {
                        let any: bool = tx
                            .query_row(
                                &format!("SELECT EXISTS (SELECT 1 FROM {})", q(t)),
                                [],
                                |r| r.get(0),
                            )
                            .map_err(wrap)?;
                        empty &= !any;
                    }
                    if !empty {
                        return Err((edge, message, rusqlite::Error::InvalidQuery));
                    }
                    for t in old.tables() {
                        tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", q(t)))
                            .map_err(wrap)?;
                    }
                    for s in create_sql(new) {
                        tx.execute_batch(&s).map_err(wrap)?;
                    }
                }
            },
        }
        Ok(())
    }
}

impl StoreRead for SqliteStore {
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        self.layouts
            .get(model)
            .map(|l| l.edges.iter().map(|e| e.name.clone()).collect())
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> &Path {
        &self.path
    }

    fn last_stored(&self, model: &str, key: &IndexKey) -> Result<Option<Timestamp>, StoreError> {
        let l = self.layout(model)?;
        let (cols, vals) = match index_lookup(l, key) {
            Ok(found) => found,
            // A value that cannot be stored in the key's columns was never stored.
            Err(StoreError::InvalidValue { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if vals.iter().any(|v| matches!(v, Sql::Null)) {
            return Ok(None);
        }
        let sql = format!(
            "SELECT \"_kye_fetched_at\" FROM {} WHERE {}",
            q(&l.table),
            where_eq("", &cols)
        );
        let at: Option<String> = self.sql(|c| {
            c.prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(vals.iter()), |r| r.get(0))
                .optional()
        })?;
        Ok(at.and_then(|s| s.parse().ok()))
    }

    fn latest_outcome(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        self.sql(|c| {
            c.prepare_cached(
                "SELECT run_id, status, reason, at FROM _kye_keys WHERE model = ?1 AND key = ?2 \
                 ORDER BY at DESC, run_id DESC LIMIT 1",
            )?
            .query_row(params![model, key.canonical()], outcome_row)
            .optional()
        })
    }

    fn latest_done(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        self.sql(|c| {
            c.prepare_cached(
                "SELECT run_id, status, reason, at FROM _kye_keys WHERE model = ?1 AND key = ?2 \
                 AND status IN ('stored', 'missing', 'rejected', 'skipped') \
                 ORDER BY run_id DESC LIMIT 1",
            )?
            .query_row(params![model, key.canonical()], outcome_row)
            .optional()
        })
    }

    fn record(&self, model: &str, key: &IndexKey) -> Result<Option<Value>, StoreError> {
        let l = self.layout(model)?;
        let (cols, vals) = match index_lookup(l, key) {
            Ok(found) => found,
            // A value that cannot be stored in the key's columns was never stored.
            Err(StoreError::InvalidValue { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if vals.iter().any(|v| matches!(v, Sql::Null)) {
            return Ok(None);
        }
        let reader = Reader {
            conn: &self.conn,
            path: &self.path,
            layouts: &self.layouts,
        };
        let mut found = reader.query(
            l,
            &where_eq("t.", &cols),
            &vals,
            Shape {
                limit: Some(1),
                depth: 0,
                provenance: false,
            },
            &mut Vec::new(),
        )?;
        Ok(found.pop())
    }

    fn latest_run_of(&self, request: &str) -> Result<Option<RunInfo>, StoreError> {
        let run = self.sql(|c| {
            c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM _kye_runs WHERE request = ?1 ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([request], run_from_row)
            .optional()
        })?;
        Ok(self.live_counts(run.into_iter().collect())?.pop())
    }

    fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError> {
        if !self.initialized {
            return Ok(RunCounts::default());
        }
        let rows: Vec<(String, i64)> = self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT status, count(*) FROM _kye_keys WHERE run_id = ?1 GROUP BY status",
            )?;
            let rows = st.query_map([run.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut counts = RunCounts::default();
        for (status, n) in rows {
            let n = n as u64;
            match KeyStatus::parse(&status) {
                Some(KeyStatus::Stored) => counts.stored += n,
                Some(KeyStatus::Rejected) => counts.rejected += n,
                Some(KeyStatus::Missing) => counts.missing += n,
                Some(KeyStatus::Skipped) => counts.skipped += n,
                Some(KeyStatus::Failed) | None => counts.failed += n,
            }
        }
        Ok(counts)
    }

    fn for_each_record(
        &self,
        query: &RecordQuery,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let l = self.layout(&query.model)?;
        let reader = Reader {
            conn: &self.conn,
            path: &self.path,
            layouts: &self.layouts,
        };
        let (where_sql, args) = match &query.filter {
            None => (String::new(), Vec::new()),
            Some(f) => filter_sql(l, f)?,
        };
        reader.query_each(
            l,
            &where_sql,
            &args,
            Shape {
                limit: query.limit,
                depth: query.depth,
                provenance: query.provenance,
            },
            &mut Vec::new(),
            each,
        )
    }

    fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        let limit = limit.map(|n| n.min(i64::MAX as usize) as i64).unwrap_or(-1);
        let runs = self.sql(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM _kye_runs ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = st.query_map([limit], run_from_row)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        self.live_counts(runs)
    }

    fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        let run = self.sql(|c| {
            c.prepare_cached(&format!("SELECT {RUN_COLS} FROM _kye_runs WHERE id = ?1"))?
                .query_row([id.0], run_from_row)
                .optional()
        })?;
        Ok(self.live_counts(run.into_iter().collect())?.pop())
    }

    fn rejects(
        &self,
        run: Option<RunId>,
        limit: Option<usize>,
    ) -> Result<Vec<RejectInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        let limit = limit.map(|n| n.min(i64::MAX as usize) as i64).unwrap_or(-1);
        self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, run_id, model, key, fetcher, reason, errors, payload, at FROM _kye_rejects \
                 WHERE (?1 IS NULL OR run_id = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![run.map(|r| r.0), limit], |r| {
                let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
                let at: String = r.get(8)?;
                Ok(RejectInfo {
                    id: r.get(0)?,
                    run: RunId(r.get(1)?),
                    model: r.get(2)?,
                    key: json(r.get(3)?),
                    fetcher: r.get(4)?,
                    reason: r.get(5)?,
                    errors: json(r.get(6)?).unwrap_or(Value::Null),
                    payload: json(r.get(7)?).unwrap_or(Value::Null),
                    at: at.parse().unwrap_or(Timestamp::from_unix_millis(0)),
                })
            })?;
            rows.collect()
        })
    }

    fn drift(&self) -> Result<Vec<DriftInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT model, path, first_seen, last_seen, first_run, last_run, example, count \
                 FROM _kye_drift ORDER BY model, path",
            )?;
            let rows = st.query_map([], |r| {
                let ts = |s: String| s.parse().unwrap_or(Timestamp::from_unix_millis(0));
                let example: String = r.get(6)?;
                Ok(DriftInfo {
                    model: r.get(0)?,
                    path: r.get(1)?,
                    first_seen: ts(r.get(2)?),
                    last_seen: ts(r.get(3)?),
                    first_run: RunId(r.get(4)?),
                    last_run: RunId(r.get(5)?),
                    example: serde_json::from_str(&example).unwrap_or(Value::String(example)),
                    count: r.get::<_, i64>(7)? as u64,
                })
            })?;
            rows.collect()
        })
    }
}

impl StoreWrite for SqliteStore {
    fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        Ok(Box::new(SqliteStore::open_read_only(&self.path)?))
    }

    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
        self.check_writable()?;
        let new_layouts = layout::layouts_of(schema)?;
        // Table names must not clash with each other nor with stored models left out of this schema.
        let mut all = new_layouts.clone();
        for (name, l) in &self.layouts {
            if schema.model(name).is_none() {
                all.push(l.clone());
            }
        }
        layout::check_tables(&all)?;
        // Tables of that name (in any case, as SQLite compares names) that kye did not create
        // are not ours to touch: checked before anything is written, kye's own tables included.
        for l in &new_layouts {
            let old_tables = self
                .layouts
                .get(&l.model)
                .map(ModelLayout::tables)
                .unwrap_or_default();
            for t in l.tables() {
                if old_tables.iter().any(|o| o.eq_ignore_ascii_case(t)) || !self.has_table(t)? {
                    continue;
                }
                return Err(StoreError::SchemaChange {
                    model: l.model.clone(),
                    edge: None,
                    message: format!(
                        "{} already has a table named {:?} that kye did not create; \
                         rename or drop it, or use another database file",
                        self.path.display(),
                        self.table_name_as_stored(t)?
                            .unwrap_or_else(|| t.to_string())
                    ),
                });
            }
        }
        self.ensure_initialized()?;
        let now = Timestamp::now().to_string();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        for l in &new_layouts {
            let old = self.layouts.get(&l.model);
            if old == Some(l) {
                continue;
            }
            Self::apply_plan(&tx, old, l).map_err(|(edge, message, source)| {
                if message.is_empty() {
                    StoreError::Sqlite {
                        path: path.clone(),
                        source,
                    }
                } else {
                    StoreError::SchemaChange {
                        model: l.model.clone(),
                        edge,
                        message: format!(
                            "{message}. {} holds records of {} in the old shape and was left unchanged. \
                             Restore the old definition, or store into a new database file (--db), \
                             or export and drop the table {:?} (and its {}__* child tables) with sqlite3 \
                             to start over.",
                            path.display(),
                            l.model,
                            l.table,
                            l.table
                        ),
                    }
                }
            })?;
            let text = serde_json::to_string(l).unwrap_or_default();
            tx.execute(
                "INSERT INTO _kye_models (model, fingerprint, layout, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) \
                 ON CONFLICT (model) DO UPDATE SET fingerprint = excluded.fingerprint, \
                 layout = excluded.layout, updated_at = excluded.updated_at",
                params![l.model, l.fingerprint(), text, now],
            )
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        }
        if new_layouts.iter().any(ModelLayout::has_value_objects) {
            tx.execute(
                "UPDATE _kye_meta SET value = ?1 WHERE key = 'format_version' AND CAST(value AS INTEGER) < ?1",
                [FORMAT_VERSION],
            )
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        }
        tx.commit()
            .map_err(|source| StoreError::Sqlite { path, source })?;
        for l in new_layouts {
            self.layouts.insert(l.model.clone(), l);
        }
        Ok(())
    }

    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
        self.check_writable()?;
        self.ensure_initialized()?;
        self.sql(|c| {
            c.execute(
                "INSERT INTO _kye_runs (request, started_at, status, resumed_from, pid) VALUES (?1, ?2, 'running', ?3, ?4)",
                params![
                    run.request,
                    run.started_at.to_string(),
                    run.resumed_from.map(|r| r.0),
                    i64::from(std::process::id())
                ],
            )?;
            Ok(RunId(c.last_insert_rowid()))
        })
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
        self.check_writable()?;
        self.ensure_initialized()?;
        let n = self.sql(|c| {
            c.execute(
                "UPDATE _kye_runs SET ended_at = ?2, status = ?3, stored = ?4, rejected = ?5, missing = ?6, \
                 failed = ?7, skipped = ?8, error = ?9 WHERE id = ?1",
                params![
                    run.0,
                    end.ended_at.to_string(),
                    end.status.as_str(),
                    end.counts.stored as i64,
                    end.counts.rejected as i64,
                    end.counts.missing as i64,
                    end.counts.failed as i64,
                    end.counts.skipped as i64,
                    end.error
                ],
            )
        })?;
        if n == 0 {
            return Err(StoreError::UnknownRun(run));
        }
        Ok(())
    }

    fn write_batch(
        &mut self,
        items: &[WriteItem],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.check_writable()?;
        self.ensure_initialized()?;
        let path = self.path.clone();
        let fatal = |source: rusqlite::Error| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fatal)?;
        let mut w = BatchWriter {
            st: Statements::new(&tx),
            path: &path,
            layouts: &self.layouts,
            times: TimeText::default(),
        };
        let mut key_text = String::new();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let result = match item {
                WriteItem::Record(r) => {
                    // A failed record leaves nothing behind while the rest of the batch
                    // commits.
                    if has_nested_records(w.layouts, &r.model, &r.value) {
                        w.st.execute("SAVEPOINT kye_item", []).map_err(fatal)?;
                        match w.store_record(&r.model, &r.value, &r.provenance, 0) {
                            Ok(()) => {
                                w.st.execute("RELEASE kye_item", []).map_err(fatal)?;
                                Ok(())
                            }
                            Err(e) if e.is_item_error() => {
                                w.st.execute("ROLLBACK TO kye_item", []).map_err(fatal)?;
                                w.st.execute("RELEASE kye_item", []).map_err(fatal)?;
                                Err(e)
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        // Item errors of a record without nested records come before its
                        // first write or fail that write, which SQLite undoes: nothing to
                        // roll back.
                        w.store_record(&r.model, &r.value, &r.provenance, 0)
                    }
                }
                WriteItem::Reject(r) => w
                    .st
                    .execute(
                        "INSERT INTO _kye_rejects (run_id, model, key, fetcher, reason, errors, payload, at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            r.run.0,
                            r.model,
                            r.key.as_ref().map(IndexKey::canonical),
                            r.fetcher,
                            r.reason,
                            serde_json::to_string(&r.errors).unwrap_or_else(|_| "null".into()),
                            serde_json::to_string(&r.payload).unwrap_or_else(|_| "null".into()),
                            r.at.to_string()
                        ],
                    )
                    .map(|_| ())
                    .map_err(fatal),
                WriteItem::Drift(d) => w
                    .st
                    .execute(
                        "INSERT INTO _kye_drift (model, path, first_seen, last_seen, first_run, last_run, example, count) \
                         VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5, 1) \
                         ON CONFLICT (model, path) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), \
                         last_run = max(last_run, excluded.last_run), example = excluded.example, count = count + 1",
                        params![
                            d.model,
                            fold_path(&d.path),
                            d.seen_at.to_string(),
                            d.run.0,
                            canonical_json(&drift_example(&d.example))
                        ],
                    )
                    .map(|_| ())
                    .map_err(fatal),
                WriteItem::KeyOutcome(k) => {
                    key_text.clear();
                    k.key.write_canonical(&mut key_text);
                    let at = w.times.get(k.at);
                    w.st.execute(
                        "INSERT OR REPLACE INTO _kye_keys (run_id, model, key, status, reason, at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            k.run.0,
                            k.model,
                            key_text,
                            k.status.as_str(),
                            k.reason,
                            at
                        ],
                    )
                    .map(|_| ())
                    .map_err(fatal)
                }
            };
            match result {
                Ok(()) => results.push(Ok(())),
                Err(e) if e.is_item_error() => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        drop(w);
        tx.commit().map_err(fatal)?;
        Ok(results)
    }
}

/// `WHERE` text and arguments for an `edge = value` filter.
fn filter_sql(l: &ModelLayout, f: &Filter) -> Result<(String, Vec<Sql>), StoreError> {
    let bad = |message: String| StoreError::InvalidFilter {
        model: l.model.clone(),
        message,
    };
    let e = l.edge(&f.edge).ok_or_else(|| {
        bad(format!(
            "{} has no edge {:?}; its edges are {}",
            l.model,
            f.edge,
            l.edges
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if e.value_object {
        return Err(bad(format!(
            "edge {} holds {} value objects (records without an index); filter on an edge of {} itself",
            e.name,
            e.target.as_deref().unwrap_or("nested"),
            l.model
        )));
    }
    if e.cols.len() != 1 {
        return Err(bad(format!(
            "edge {} refers to a model with a composite key; filter on one of its own edges instead",
            e.name
        )));
    }
    let c = &e.cols[0];
    let v = to_sql(&f.value, c.prim).map_err(|m| bad(format!("edge {}: {m}", e.name)))?;
    if e.multiple {
        let table = e.table.as_deref().unwrap_or_default();
        let join = l
            .parent_cols
            .iter()
            .zip(&l.key)
            .map(|(p, k)| format!("c.{} = t.{}", q(p), q(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
        Ok((
            format!(
                "EXISTS (SELECT 1 FROM {} AS c WHERE {join} AND c.{} = ?)",
                q(table),
                q(&c.name)
            ),
            vec![v],
        ))
    } else {
        Ok((format!("t.{} = ?", q(&c.name)), vec![v]))
    }
}

/// A `run_id, status, reason, at` row of `_kye_keys` as a key outcome.
fn outcome_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyOutcomeInfo> {
    let status: String = r.get(1)?;
    let at: String = r.get(3)?;
    Ok(KeyOutcomeInfo {
        run: RunId(r.get(0)?),
        status: KeyStatus::parse(&status).unwrap_or(KeyStatus::Failed),
        reason: r.get(2)?,
        at: at.parse().unwrap_or(Timestamp::from_unix_millis(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(q("Order"), "\"Order\"");
        assert_eq!(q("a\"b"), "\"a\"\"b\"");
        assert_eq!(q("x\"; DROP TABLE y; --"), "\"x\"\"; DROP TABLE y; --\"");
    }

    #[test]
    fn values_convert_per_type() {
        assert_eq!(
            to_sql(&Value::from(25.0), Prim::Number).unwrap(),
            Sql::Integer(25)
        );
        assert_eq!(
            to_sql(&Value::from(2.5), Prim::Number).unwrap(),
            Sql::Real(2.5)
        );
        assert_eq!(
            to_sql(&Value::from("7"), Prim::Number).unwrap(),
            Sql::Integer(7)
        );
        assert!(to_sql(&Value::from("seven"), Prim::Number).is_err());
        assert_eq!(
            to_sql(&Value::from(true), Prim::Boolean).unwrap(),
            Sql::Integer(1)
        );
        assert_eq!(
            to_sql(&Value::from(3), Prim::String).unwrap(),
            Sql::Text("3".into())
        );
        assert!(to_sql(&serde_json::json!([1]), Prim::String).is_err());
    }
}
