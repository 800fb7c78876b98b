//! Errors of stores, and which of them concern one item of a batch.

use std::path::PathBuf;

use super::RunId;

/// Errors of stores. Messages name the store, model, key and edge involved and say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (the server's message; `code` is its SQLSTATE).
    #[error("PostgreSQL error on {location}: {message}")]
    Postgres {
        /// The store, shown without its password.
        location: String,
        /// What the server or the client said.
        message: String,
        /// SQLSTATE, e.g. `40P01` for a deadlock.
        code: Option<String>,
    },
    /// A PostgreSQL server that cannot be reached or refuses the login.
    #[error(
        "cannot connect to PostgreSQL at {host}, database {database:?} as user {user:?}: {message}"
    )]
    Connect {
        /// `host:port`.
        host: String,
        /// Database name.
        database: String,
        /// Login role.
        user: String,
        /// Why (never the password).
        message: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// File or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the writer lock.
    #[error(
        "{path} is being written by another kye process{holder}; wait for it to finish, or \
         use another store (--db / --store). Reading (show, runs, rejects, drift) works meanwhile."
    )]
    Locked {
        /// Store location.
        path: PathBuf,
        /// ` (pid N)` when known.
        holder: String,
    },
    /// A database file with several names (hard links) opened for writing.
    #[error(
        "{path} has {links} names (hard links); kye's writer lock belongs to one name, so \
         a writer under another name would not see it. Remove the other links (or copy the \
         file) before writing to it. Reading works."
    )]
    HardLinked {
        /// Database file.
        path: PathBuf,
        /// How many names the file has.
        links: u64,
    },
    /// Read-only open of a store that does not exist.
    #[error(
        "no kye store at {path}; run a fetch first or point --db/--store at an existing store"
    )]
    NotFound {
        /// Location.
        path: PathBuf,
    },
    /// The schema changed incompatibly with what is stored.
    #[error("model {model}{edge_part}: {message}", edge_part = edge.as_ref().map(|e| format!(", edge {e}")).unwrap_or_default())]
    SchemaChange {
        /// Model.
        model: String,
        /// Edge, when one is concerned.
        edge: Option<String>,
        /// What changed and what to do.
        message: String,
    },
    /// A model or edge name the store cannot use.
    #[error("{what} name {name:?} cannot be stored: {reason}")]
    InvalidName {
        /// `model` or `edge`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A model the store was not prepared for.
    #[error(
        "model {model} is not known to this store: nothing of it has been stored yet, or it is not in the schema"
    )]
    UnknownModel {
        /// Model.
        model: String,
    },
    /// A record lacks a value for an edge of its primary index.
    #[error(
        "{model} record has no value for index edge {edge}; records need their whole primary index"
    )]
    MissingKey {
        /// Model.
        model: String,
        /// Edge.
        edge: String,
    },
    /// A value does not fit its edge's storage type.
    #[error("{model} {key}: edge {edge}: {message}")]
    InvalidValue {
        /// Model.
        model: String,
        /// Key of the record, when known.
        key: String,
        /// Edge.
        edge: String,
        /// What is wrong.
        message: String,
    },
    /// The record's secondary index value belongs to another stored record.
    #[error(
        "{model} {incoming}: index {index} = {value} is already stored for {model} {existing}; \
         not overwritten (the source returned two records claiming the same {index})"
    )]
    IndexConflict {
        /// Model.
        model: String,
        /// Index, e.g. `(name)`.
        index: String,
        /// The clashing value.
        value: String,
        /// Primary key of the stored record.
        existing: String,
        /// Primary key of the incoming record.
        incoming: String,
    },
    /// A nested record whose key another record of the same run nested with other content.
    #[error(
        "nested {model} {key} differs from the {model} {key} another record nested earlier in \
         this run ({differs}); not overwritten: its index does not identify one {model}; \
         if {model} has no identity of its own, declare it without an index (a value object, \
         stored with each record that holds it)"
    )]
    NestedConflict {
        /// Model of the nested record.
        model: String,
        /// Its key, e.g. `heart_rate_bpm = 120`.
        key: String,
        /// The first edge that differs, with both values.
        differs: String,
    },
    /// The database refused one record with a constraint kye's own checks did not foresee
    /// (PostgreSQL: a unique violation found when the batch was written record by record:
    /// rows of an edge kye did not write, or a constraint kye did not make); the rest of its
    /// batch is written.
    #[error("{model} {key}: the database refused the record: {index}: {message}")]
    Refused {
        /// Model.
        model: String,
        /// Key of the record.
        key: String,
        /// What it clashed on: `edge tags (table "Item__tags")`, or the database's
        /// constraint, `constraint "dba_unique_v" on "Item"`.
        index: String,
        /// Why (the database's message, or what kye found).
        message: String,
    },
    /// A change of the sealed secrets refused because another one happened meanwhile (a
    /// `secret set` under another master key than the stored secrets', a rotation whose
    /// secrets changed while it re-sealed them). Nothing was written.
    #[error("sealed secrets: {message}")]
    Secrets {
        /// What happened and what to do.
        message: String,
    },
    /// A `show` filter that does not apply to the model.
    #[error("filter{}: {message}", if model.is_empty() { String::new() } else { format!(" on {model}") })]
    InvalidFilter {
        /// Model.
        model: String,
        /// Why.
        message: String,
    },
    /// A store spec that could not be parsed.
    #[error("store {spec:?}: {message}")]
    InvalidSpec {
        /// The spec.
        spec: String,
        /// Why.
        message: String,
    },
    /// Something this kind of store does not do (e.g. the directory store keeps no lineage,
    /// so it cannot run transformers; only PostgreSQL completes queued batches).
    #[error("the {store} store {what}")]
    Unsupported {
        /// `dir`, `sqlite` or `postgres`.
        store: &'static str,
        /// What it does not do and what to use instead.
        what: String,
    },
    /// A run id that is not in the store.
    #[error("no run {0} in this store")]
    UnknownRun(RunId),
    /// A queued batch's completion was refused: the worker's lease on it expired and the batch
    /// was put back (or taken by another worker). Nothing of the write was committed.
    #[error(
        "lease lost: batch {batch} of run {run} is no longer held by this worker (its lease \
         expired, or another worker took it); nothing of the batch was written"
    )]
    LeaseLost {
        /// The batch.
        batch: i64,
        /// Its run.
        run: RunId,
    },
    /// Stored data that cannot be read back.
    #[error("{path}: {message}")]
    Corrupt {
        /// Location.
        path: PathBuf,
        /// What.
        message: String,
    },
}

impl StoreError {
    /// True for errors about one item of a batch (the rest of the batch is written).
    pub fn is_item_error(&self) -> bool {
        matches!(
            self,
            StoreError::UnknownModel { .. }
                | StoreError::MissingKey { .. }
                | StoreError::InvalidValue { .. }
                | StoreError::IndexConflict { .. }
                | StoreError::NestedConflict { .. }
                | StoreError::Refused { .. }
                | StoreError::Unsupported { .. }
        )
    }
}
