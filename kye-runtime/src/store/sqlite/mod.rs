//! The SQLite store (default): one table per model, typed columns, child tables for
//! multi-valued edges, provenance columns, and kye's own `_kye_*` tables.
//!
//! Two handles: [`SqliteStore`], the writer (it holds the writer lock and reads its own
//! writes), and [`SqliteReader`], a read-only connection that works alongside a writer (WAL
//! mode) and has no write methods. This file opens them; `ddl` holds the tables, `convert`
//! the values, `write` and `batch` the writer's side and `read` every query.

mod batch;
mod checkpoint;
mod convert;
mod ddl;
mod read;
#[cfg(feature = "server")]
mod server;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::store::key::cut;
use crate::store::layout::ModelLayout;
use crate::store::lock::WriterLock;
use crate::store::traits::read_through;
use crate::store::StoreError;

use ddl::ModelSql;

#[cfg(feature = "server")]
pub use server::SqliteServerStore;

/// Version of kye's own tables in a database file; bumped (with a migration) when they change.
/// 2: layouts may store value objects in child tables (`value_object` edges), which a kye
/// reading only format 1 would misread. A format 1 store is raised to 2 by the first
/// `prepare` that stores a value object; until then older kye versions can still write it.
const FORMAT_VERSION: i64 = 2;

/// Nested records deeper than this are not followed when storing (guards against cycles).
const MAX_NESTING: usize = 32;

/// A read-only handle on a SQLite store: it implements only
/// [`StoreRead`](crate::store::StoreRead), so nothing can be written through it. Opened with
/// [`SqliteReader::open`] (or handed out by [`SqliteStore`]'s
/// [`reader`](crate::store::StoreWrite::reader)), it takes no lock and reads alongside a
/// writer, seeing what the writer has committed.
#[derive(Debug)]
pub struct SqliteReader {
    conn: Connection,
    path: PathBuf,
    /// kye's own tables exist (always, for a reader; a writer's file may not have them yet).
    initialized: bool,
    layouts: HashMap<String, ModelLayout>,
    /// Model tables made before issue 18, still without `_kye_source` (a store no writer of
    /// this kye has prepared yet): read with a NULL source.
    no_source: std::collections::HashSet<String>,
    /// `_kye_runs` has its `source` column.
    runs_source: bool,
    /// The writer lock to ask when a run reads `running`: readers tell a dead writer's run by
    /// it. `None` inside the writer, which holds the lock itself.
    writer_lock: Option<PathBuf>,
}

/// The SQLite store opened for writing. See the module docs and `docs/store.md`.
///
/// Opened with [`SqliteStore::open`], it holds the writer lock `<file>.lock`; it reads its
/// own writes through the same code as a [`SqliteReader`].
#[derive(Debug)]
pub struct SqliteStore {
    /// Runs the log's checkpoints off the writer's path (stopped before the connection
    /// closes: fields drop in order).
    checkpointer: Option<checkpoint::Checkpointer>,
    /// The writer's connection, read through as by a reader. Until [`StoreWrite::prepare`]
    /// (crate::store::StoreWrite::prepare) has checked a file without kye's tables (new, or a
    /// database kye did not create), it is not `initialized` and nothing is written to it.
    db: SqliteReader,
    /// The statements of each stored model's writes.
    sql: HashMap<String, ModelSql>,
    _lock: WriterLock,
}

impl SqliteReader {
    /// Opens an existing database for reading only. Takes no lock.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteReader, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::NotFound { path });
        }
        let mut reader = match Self::connect(&path, false) {
            Ok(reader) => reader,
            // WAL mode needs `<file>-shm` and `<file>-wal`. When no writer runs they do not
            // exist, and a reader without write access to the directory cannot create them:
            // then the file alone is the whole store, read as immutable.
            Err(e) if cannot_create_wal_files(&e) && !wal_file(&path, "-wal").exists() => {
                Self::connect(&path, true)?
            }
            Err(e) => return Err(e),
        };
        reader.check_format_version()?;
        reader.load_layouts()?;
        Ok(reader)
    }

    /// A read-only connection to `path` whose kye tables were found; `immutable` opens it
    /// without locks or WAL files (only when no writer can be running).
    fn connect(path: &Path, immutable: bool) -> Result<SqliteReader, StoreError> {
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
        let reader = SqliteReader {
            conn,
            path: path.to_path_buf(),
            initialized: true,
            layouts: HashMap::new(),
            no_source: Default::default(),
            runs_source: true,
            writer_lock: Some(lock_path(path)),
        };
        reader.sql(|c| c.busy_timeout(std::time::Duration::from_secs(5)))?;
        if !reader.has_table("_kye_models")? {
            return Err(StoreError::Corrupt {
                path: reader.path.clone(),
                message: "this SQLite file has no kye tables (_kye_models); is it a kye store?"
                    .to_string(),
            });
        }
        Ok(reader)
    }

    /// The underlying connection (read-only), for queries kye does not offer.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        f(&self.conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
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
        self.find_old_tables()
    }

    /// Notes the tables of a store made before issue 18 that lack its columns (`_kye_source`
    /// in model tables, `source` in `_kye_runs`), so reading them selects NULL instead.
    pub(super) fn find_old_tables(&mut self) -> Result<(), StoreError> {
        let has = |c: &Connection, table: &str, column: &str| -> rusqlite::Result<bool> {
            c.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
                [table, column],
                |r| r.get(0),
            )
        };
        let tables: Vec<String> = self.layouts.values().map(|l| l.table.clone()).collect();
        let mut missing = std::collections::HashSet::new();
        for t in tables {
            if !self.sql(|c| has(c, &t, crate::store::layout::SOURCE_COLUMN))? {
                missing.insert(t);
            }
        }
        self.no_source = missing;
        self.runs_source =
            !self.has_table("_kye_runs")? || self.sql(|c| has(c, "_kye_runs", "source"))?;
        Ok(())
    }

    fn layout(&self, model: &str) -> Result<&ModelLayout, StoreError> {
        self.layouts
            .get(model)
            .ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })
    }
}

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
            checkpointer: None,
            db: SqliteReader {
                conn,
                path,
                initialized: false,
                layouts: HashMap::new(),
                no_source: Default::default(),
                runs_source: true,
                writer_lock: None,
            },
            sql: HashMap::new(),
            _lock: lock,
        };
        store.db.sql(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.set_prepared_statement_cache_capacity(512);
            Ok(())
        })?;
        // A file without kye's tables is not written before `prepare` has checked it.
        if store.db.has_table("_kye_meta")? {
            store.init_writer()?;
            store.db.load_layouts()?;
            store.sql = ddl::statements(&store.db.layouts);
            store.recover_runs()?;
        }
        Ok(store)
    }

    /// The underlying connection, for queries kye does not offer. Do not write through it.
    pub fn connection(&self) -> &Connection {
        &self.db.conn
    }
}

/// The writer lock of a database: `<file>.lock` next to the file's canonical path, so a
/// symbolic link to the file or to a directory above it leads to the same lock.
pub(super) fn lock_path(db: &Path) -> PathBuf {
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

read_through!(SqliteStore, db);
