//! SQLite DDL: kye's own tables, the tables of a model's layout, the statements a layout's
//! writes use, and applying a schema change plan.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::Connection;

use crate::store::layout::{self, EdgeLayout, ModelLayout, Prim, POSITION};
use crate::store::plan::{self, Action, Change, Step};
use crate::store::StoreError;

/// Declared SQLite column type (affinity) of a kye column type.
fn sql_type(prim: Prim) -> &'static str {
    match prim {
        Prim::String => "TEXT",
        // NUMERIC affinity: integral values are kept as INTEGER, others as REAL.
        Prim::Number => "NUMERIC",
        Prim::Boolean => "INTEGER",
        Prim::Json => "TEXT",
    }
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

/// Quoted names, comma-separated.
pub(super) fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    names
        .into_iter()
        .map(|n| q(n.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `?, ?, …` for `n` arguments.
pub(super) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `a = ? AND b = ?` over quoted columns, each prefixed (`t.`).
pub(super) fn where_eq(prefix: &str, cols: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    cols.into_iter()
        .map(|c| format!("{prefix}{} = ?", q(c.as_ref())))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// kye's own tables.
pub(super) const INTERNAL_TABLES: &str = r#"
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
    pid          INTEGER,
    source       TEXT
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
CREATE TABLE IF NOT EXISTS _kye_list_cursors (
    model    TEXT NOT NULL,
    lister   TEXT NOT NULL,
    cursor   TEXT NOT NULL,
    finished INTEGER NOT NULL,
    run_id   INTEGER NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (model, lister)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _kye_lineage (
    transformer  TEXT NOT NULL,
    output_model TEXT NOT NULL,
    output_key   TEXT NOT NULL,
    input_model  TEXT NOT NULL,
    input_key    TEXT NOT NULL,
    input_hash   TEXT,
    input_primary INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (transformer, output_key, input_model, input_key)
) WITHOUT ROWID;
"#;

/// Replaces the lineage of one output: its old rows go, then one row per input.
pub(super) const LINEAGE_DELETE: &str =
    "DELETE FROM _kye_lineage WHERE transformer = ?1 AND output_key = ?2";
/// One lineage row (an input read twice keeps its last hash, and is primary if either was).
pub(super) const LINEAGE_INSERT: &str =
    "INSERT INTO _kye_lineage (transformer, output_model, output_key, input_model, input_key, input_hash, input_primary) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
     ON CONFLICT (transformer, output_key, input_model, input_key) DO UPDATE SET \
     input_hash = excluded.input_hash, input_primary = max(input_primary, excluded.input_primary)";

/// The tables of a model: its table, then its child tables.
pub(super) fn create_sql(l: &ModelLayout) -> Vec<String> {
    let key_names: HashSet<&str> = l.key.iter().map(|c| c.name.as_str()).collect();
    let mut cols = Vec::new();
    for e in l.edges.iter().filter(|e| !e.in_child_table()) {
        for c in &e.cols {
            let not_null = if key_names.contains(c.name.as_str()) {
                " NOT NULL"
            } else {
                ""
            };
            cols.push(format!("{} {}{not_null}", q(&c.name), sql_type(c.prim)));
        }
    }
    cols.push("\"_kye_run_id\" INTEGER NOT NULL".to_string());
    cols.push("\"_kye_fetcher\" TEXT NOT NULL".to_string());
    cols.push("\"_kye_fetched_at\" TEXT NOT NULL".to_string());
    cols.push("\"_kye_hash\" TEXT NOT NULL".to_string());
    cols.push(format!("{} TEXT", q(layout::SOURCE_COLUMN)));
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

/// The child table of a multi-valued edge or value object.
pub(super) fn child_create_sql(l: &ModelLayout, e: &EdgeLayout) -> String {
    let table = e.table.as_deref().unwrap_or_default();
    let mut cols = Vec::new();
    for (p, k) in l.parent_cols.iter().zip(&l.key) {
        cols.push(format!("{} {} NOT NULL", q(p), sql_type(k.prim)));
    }
    cols.push(format!("{} INTEGER NOT NULL", q(POSITION)));
    for c in &e.cols {
        cols.push(format!("{} {}", q(&c.name), sql_type(c.prim)));
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

/// The statements the writer runs for one model, built once per layout.
#[derive(Debug, Clone, Default)]
pub(super) struct ModelSql {
    /// Per secondary index: select the primary key of the row holding a value.
    pub unique_selects: Vec<String>,
    /// Per secondary index: where each of its columns is among the inline columns of
    /// [`ModelSql::insert_new`] (`None`: not an inline column).
    pub unique_positions: Vec<Vec<Option<usize>>>,
    /// Replace the stored row's columns, found by primary key: the arguments of
    /// [`ModelSql::insert_new`], then the key. The row keeps its place (and rowid), so the primary
    /// key's index is not touched.
    pub update: String,
    /// Per multi-valued edge (in edge order): delete its child rows by parent key.
    pub child_deletes: Vec<String>,
    /// Per multi-valued edge (in edge order): its child rows' item columns by parent key, in
    /// position order.
    pub child_selects: Vec<String>,
    /// Insert a row (inline columns in edge order, then the provenance columns), doing
    /// nothing when the key is already stored (0 rows changed). A value of a secondary index
    /// held by another row fails it with `SQLITE_CONSTRAINT_UNIQUE`.
    pub insert_new: String,
    /// Per multi-valued edge (in edge order): insert one child row.
    pub child_inserts: Vec<String>,
    /// Select the stored row by primary key: inline columns as in [`ModelSql::insert_new`],
    /// then the provenance columns.
    pub stored_row: String,
}

/// The statements of every model of `layouts`, by model.
pub(super) fn statements(layouts: &HashMap<String, ModelLayout>) -> HashMap<String, ModelSql> {
    layouts
        .values()
        .map(|l| (l.model.clone(), model_sql(l)))
        .collect()
}

/// The statements of a layout.
pub(super) fn model_sql(l: &ModelLayout) -> ModelSql {
    {
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
        let child_selects = multi
            .iter()
            .map(|e| {
                format!(
                    "SELECT {} FROM {} WHERE {} ORDER BY {}",
                    list(e.cols.iter().map(|c| &c.name)),
                    q(e.table.as_deref().unwrap_or_default()),
                    where_eq("", &l.parent_cols),
                    q(POSITION)
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
        // Key columns are not set (they are the same): their index stays as it is.
        let sets: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| !key_cols.contains(n))
            .map(|(i, n)| format!("{} = ?{}", q(n), i + 1))
            .collect();
        let update = format!(
            "UPDATE {} SET {} WHERE {}",
            q(&l.table),
            sets.join(", "),
            key_cols
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", q(c), names.len() + i + 1))
                .collect::<Vec<_>>()
                .join(" AND ")
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
            update,
            child_deletes,
            child_selects,
            // Only a stored key is "nothing to do": a clash on a secondary index is an error.
            insert_new: format!("{insert} ON CONFLICT ({}) DO NOTHING", list(&key_cols)),
            child_inserts,
            stored_row,
        }
    }
}

/// Carries out one step of `prepare` inside its transaction `tx` on the database at `path`.
/// A refused step whose old tables hold nothing rebuilds them instead.
pub(super) fn apply(tx: &Connection, step: &Step, path: &Path) -> Result<(), StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    };
    let new = &step.layout;
    if !matches!(step.action, Action::Create) {
        ensure_source_column(tx, &new.table).map_err(sql)?;
    }
    match &step.action {
        Action::Keep => {}
        Action::Create => {
            for s in create_sql(new) {
                tx.execute_batch(&s).map_err(sql)?;
            }
        }
        Action::Migrate(changes) => {
            for c in changes {
                match c {
                    Change::AddColumns(e) => {
                        for col in &e.cols {
                            tx.execute_batch(&format!(
                                "ALTER TABLE {} ADD COLUMN {} {}",
                                q(&new.table),
                                q(&col.name),
                                sql_type(col.prim)
                            ))
                            .map_err(sql)?;
                        }
                    }
                    Change::AddTable(e) => {
                        tx.execute_batch(&child_create_sql(new, e)).map_err(sql)?;
                    }
                    Change::Relax => {}
                }
            }
        }
        Action::Refuse { edge, message } => {
            let old = step
                .old
                .as_ref()
                .map(ModelLayout::tables)
                .unwrap_or_default();
            // Nothing stored yet: rebuild the tables instead of refusing.
            let mut empty = true;
            for t in &old {
                let any: bool = tx
                    .query_row(
                        &format!("SELECT EXISTS (SELECT 1 FROM {})", q(t)),
                        [],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                empty &= !any;
            }
            if !empty {
                return Err(plan::refused(step, edge.clone(), message, path, "sqlite3"));
            }
            for t in &old {
                tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", q(t)))
                    .map_err(sql)?;
            }
            for s in create_sql(new) {
                tx.execute_batch(&s).map_err(sql)?;
            }
        }
    }
    Ok(())
}

/// Adds `_kye_source` to a model table made before issue 18 (old stores stay readable and
/// writable; their old rows have no source).
pub(super) fn ensure_source_column(tx: &Connection, table: &str) -> rusqlite::Result<()> {
    let mut st = tx.prepare(&format!(
        "SELECT name FROM pragma_table_info({})",
        lit(table)
    ))?;
    let names = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut exists = None;
    for n in names {
        let n = n?;
        if exists.is_none() {
            exists = Some(false);
        }
        if n == layout::SOURCE_COLUMN {
            exists = Some(true);
        }
    }
    // No columns at all: the table does not exist (yet), nothing to add.
    if exists == Some(false) {
        tx.execute_batch(&format!(
            "ALTER TABLE {} ADD COLUMN {} TEXT",
            q(table),
            q(layout::SOURCE_COLUMN)
        ))?;
    }
    Ok(())
}

/// `s` as an SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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
}
