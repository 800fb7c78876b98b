//! Stores: where validated records, quarantined rejects, drift and run history go.
//!
//! The runtime writes through a [`StoreWrite`] in batches of [`WriteItem`]s and reads through
//! [`StoreRead`] handles. Two stores ship:
//!
//! - [`SqliteStore`] (the default, file `kye.db`): one table per model, typed columns,
//!   child tables for multi-valued edges, provenance on every row, WAL mode.
//! - [`DirStore`] (`dir:PATH`): one JSON document per record under `PATH/<Model>/<key>.json`
//!   plus JSON lines files for runs, rejects, drift and key outcomes.
//! - `PgStore` (feature `postgres`, `postgres://USER@HOST:PORT/DB?schema=NAME`): SQLite's
//!   layout in a PostgreSQL schema, any number of writers at once.
//!
//! Pick one with [`StoreSpec`] (`"sqlite:kye.db"`, `"data.db"`, `"dir:out"`) and [`open_store`].
//! A store opened for writing holds an exclusive lock: a second writer on the same file or
//! directory is refused with [`StoreError::Locked`]; readers ([`open_store_read_only`],
//! [`StoreWrite::reader`]) are never blocked, and are of a type with no write methods
//! ([`SqliteReader`], [`DirReader`]). See `docs/store.md` for the tables and how to query them.
//!
//! Inside: `types`, `query`, `traits`, `error` and `spec` are what a user sees; `layout` maps a
//! model onto tables, `plan` decides what `prepare` does with a schema, `records` reads a
//! record against its layout, `values` says what a JSON value means in a column, and `rules`
//! holds what every store writes alike. Those are shared by the stores, so that a store
//! (`sqlite/`, `dir/`, `postgres/`) only says how it keeps things: each has a `mod.rs` opening
//! it, a `write` side and a `read` side.
//!
//! ```
//! use kye_runtime::store::{open_store, NewRun, Provenance, RecordWrite, StoreSpec, WriteItem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = std::env::temp_dir().join(format!("kye-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&tmp)?;
//! let schema = kye_lang::compile_str("p.kye", "Pokemon(id)(name) {\n  id: Number\n  name: String\n}")?;
//! let spec: StoreSpec = format!("sqlite:{}", tmp.join("kye.db").display()).parse()?;
//! let mut store = open_store(&spec)?;
//! store.prepare(&schema)?;
//! let run = store.begin_run(&NewRun::new("Pokemon.id = 25"))?;
//! let value = serde_json::json!({"id": 25, "name": "pikachu"});
//! let results = store.write_batch(&[WriteItem::Record(RecordWrite::new(
//!     "Pokemon", value, Provenance::new(run, "pokemon_by_id"),
//! ))])?;
//! assert!(results[0].is_ok());
//! # std::fs::remove_dir_all(&tmp)?;
//! # Ok(()) }
//! ```

mod dir;
mod error;
mod key;
mod layout;
mod lock;
mod plan;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod records;
mod rules;
#[cfg(feature = "server")]
mod server;
mod spec;
mod sqlite;
mod stale;
mod time;
mod traits;
mod types;
mod values;

pub use dir::{decode_file_name, encode_file_name, DirReader, DirStore};
pub use error::StoreError;
pub use key::{canonical_json, content_hash, IndexKey};
#[cfg(all(feature = "server", feature = "postgres"))]
pub use postgres::PgServerStore;
#[cfg(feature = "postgres")]
pub(crate) use postgres::{queued, Conn};
#[cfg(feature = "postgres")]
pub use postgres::{PgReader, PgSpec, PgStore, SslMode};
pub use query::{Filter, RecordQuery};
#[cfg(feature = "server")]
pub use server::{
    open_server_store, AuditEntry, SealedSecret, ServerStore, SessionRecord, TokenRecord,
    SESSIONS_PER_TOKEN,
};
pub use spec::StoreSpec;
#[cfg(feature = "server")]
pub use sqlite::SqliteServerStore;
pub use sqlite::{SqliteReader, SqliteStore};
pub use time::{ParseTimestampError, Timestamp};
pub use traits::{StoreRead, StoreWrite};
pub use types::{
    DriftInfo, DriftWrite, FetchedAges, KeyOutcomeInfo, KeyOutcomeWrite, KeyStatus, Lineage,
    LineageInput, LineageRow, ListCursorInfo, ListCursorWrite, NewRun, Provenance, QueueBatchWrite,
    QueuedOutcome, RecordWrite, RejectInfo, RejectWrite, RunCounts, RunEnd, RunId, RunInfo,
    RunStatus, StaleCounts, WriteItem,
};

pub(crate) use rules::{drift_example, fold_path, mark_dead, record_object, DEAD_RUN};

/// Opens a store for writing, creating it if needed, and takes its writer lock.
pub fn open_store(spec: &StoreSpec) -> Result<Box<dyn StoreWrite>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(p) => Box::new(SqliteStore::open(p)?),
        StoreSpec::Dir(p) => Box::new(DirStore::open(p)?),
        #[cfg(feature = "postgres")]
        StoreSpec::Postgres(s) => Box::new(PgStore::open(s)?),
    })
}

/// Opens an existing store for reading only (no lock; works while a writer runs).
pub fn open_store_read_only(spec: &StoreSpec) -> Result<Box<dyn StoreRead>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(p) => Box::new(SqliteReader::open(p)?),
        StoreSpec::Dir(p) => Box::new(DirReader::open(p)?),
        #[cfg(feature = "postgres")]
        StoreSpec::Postgres(s) => Box::new(PgReader::open(s)?),
    })
}
