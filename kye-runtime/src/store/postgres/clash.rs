//! Unique violations (SQLSTATE 23505) of a batch, told apart by the constraint PostgreSQL
//! names. None of them goes away by writing the batch again as it was, so none is retried:
//!
//! - a secondary index kye made (`_kye_uq<n>_…`): the first attempt does not read the stored
//!   holders of the batch's index values (clashes are rare), so the batch is written again
//!   knowing them and the records that clash fail as `IndexConflict`, as in SQLite; a value
//!   another writer (one that takes none of kye's locks) commits meanwhile is found the same
//!   way, or, record by record, by reading its holder at once;
//! - rows of an edge (a child table's key, `_kye_pk_…`) that kye did not write, left by a
//!   record row deleted without them: the record is refused, naming the edge;
//! - any other constraint on a model's tables (one kye did not make): the record is refused,
//!   naming the constraint;
//! - a constraint on kye's own tables: the batch fails at once.
//!
//! Which record clashed is found by writing the batch record by record, each in a savepoint.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::Transaction;

use crate::store::key::{canonical_json, cut};
use crate::store::layout::{EdgeLayout, ModelLayout};
use crate::store::values::key_display;
use crate::store::StoreError;

use super::batch::Row;
use super::convert::from_text;
use super::ddl::{constraint_name, ident, inline_cols, q, qi, sql_type};

/// A unique violation, with what PostgreSQL says of it.
pub(crate) struct Violation {
    /// The constraint (or unique index) it names.
    pub constraint: String,
    /// The table it is on.
    pub table: String,
    /// The server's message and detail (redacted).
    pub text: String,
}

impl Violation {
    /// The unique violation `e` is, if it is one.
    pub(crate) fn of(e: &postgres::Error) -> Option<Violation> {
        if e.code() != Some(&SqlState::UNIQUE_VIOLATION) {
            return None;
        }
        let db = e.as_db_error()?;
        let text = match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        };
        Some(Violation {
            constraint: db.constraint().unwrap_or_default().to_string(),
            table: db.table().unwrap_or_default().to_string(),
            text: crate::redact::redact_text(&text),
        })
    }

    /// The batch's error for a violation no record can be blamed for.
    pub(crate) fn batch_error(&self, location: String) -> StoreError {
        StoreError::Postgres {
            location,
            message: format!(
                "ERROR: {} (constraint {} on table {}); the batch was not written",
                self.text,
                q(&self.constraint),
                q(&self.table)
            ),
            code: Some(SqlState::UNIQUE_VIOLATION.code().to_string()),
        }
    }
}

/// What a unique violation is about.
pub(crate) enum Clash<'a> {
    /// Secondary index `index` of a model, a constraint kye made.
    Index {
        layout: &'a ModelLayout,
        index: usize,
    },
    /// The rows of an edge (its child table's key).
    Edge {
        layout: &'a ModelLayout,
        edge: &'a EdgeLayout,
    },
    /// Another constraint on a model's table or child table (one kye did not make).
    Model,
    /// A constraint on a table that is not a model's (kye's own tables).
    Internal,
}

/// Tells what `v` is about from the store's layouts.
pub(crate) fn classify<'a>(layouts: &'a HashMap<String, ModelLayout>, v: &Violation) -> Clash<'a> {
    for l in layouts.values() {
        if v.table == ident(&l.table) {
            return (0..l.uniques.len())
                .find(|i| v.constraint == constraint_name(&format!("uq{i}"), &l.table))
                .map(|index| Clash::Index { layout: l, index })
                .unwrap_or(Clash::Model);
        }
        for edge in l.edges.iter().filter(|e| e.in_child_table()) {
            let table = edge.table.as_deref().unwrap_or_default();
            if v.table == ident(table) {
                if v.constraint == constraint_name("pk", table) {
                    return Clash::Edge { layout: l, edge };
                }
                return Clash::Model;
            }
        }
    }
    Clash::Internal
}

/// The model whose table (or child table) `v` is on, if it is one of `layouts`'.
pub(crate) fn model_of<'a>(
    layouts: &'a HashMap<String, ModelLayout>,
    v: &Violation,
) -> Option<&'a str> {
    layouts
        .values()
        .find(|l| {
            v.table == ident(&l.table)
                || l.edges
                    .iter()
                    .filter_map(|e| e.table.as_deref())
                    .any(|t| v.table == ident(t))
        })
        .map(|l| l.model.as_str())
}

/// The error of the record whose rows (`rows`, the record's last) violated `v`, written alone
/// in a savepoint that was rolled back: for a secondary index kye made, the `IndexConflict`
/// naming the record that holds the value now (read in `tx`); `Ok(None)` when the violation
/// is not about a model's tables.
pub(crate) fn record_error(
    tx: &mut Transaction<'_>,
    layouts: &HashMap<String, ModelLayout>,
    rows: &[Row<'_>],
    v: &Violation,
) -> Result<Option<StoreError>, postgres::Error> {
    let (model, key) = rows.last().map(|r| r.describe()).unwrap_or_default();
    // Names the model when the clash is in a record nested in this one.
    let of = |l: &ModelLayout| {
        if l.model == model {
            String::new()
        } else {
            format!(" of nested {}", l.model)
        }
    };
    let (index, message) = match classify(layouts, v) {
        Clash::Internal => return Ok(None),
        Clash::Index { layout, index } => {
            if let Some(e) = index_holder(tx, rows, layout, index)? {
                return Ok(Some(e));
            }
            let u = &layout.uniques[index];
            (
                format!("index ({}){}", u.edges.join(", "), of(layout)),
                v.text.clone(),
            )
        }
        Clash::Edge { layout, edge } => (
            format!(
                "edge {}{} (table {})",
                edge.name,
                of(layout),
                qi(edge.table.as_deref().unwrap_or_default())
            ),
            format!(
                "the table already holds rows of this key that kye did not write (their \
                 record's row in {} is gone: deleted without them?); nothing of the record was \
                 stored. Delete those rows and fetch the key again",
                qi(&layout.table)
            ),
        ),
        Clash::Model => (
            format!("constraint {} on {}", q(&v.constraint), q(&v.table)),
            v.text.clone(),
        ),
    };
    Ok(Some(StoreError::Refused {
        model,
        key,
        index,
        message,
    }))
}

/// The `IndexConflict` of the first of `rows` (of `l`) whose value of secondary index `index`
/// another key holds, as the transaction sees it now.
fn index_holder(
    tx: &mut Transaction<'_>,
    rows: &[Row<'_>],
    l: &ModelLayout,
    index: usize,
) -> Result<Option<StoreError>, postgres::Error> {
    let u = &l.uniques[index];
    let prims: Vec<_> = u
        .cols
        .iter()
        .map(|c| {
            inline_cols(l)
                .find(|(_, col)| &col.name == c)
                .map(|(_, col)| col.prim)
        })
        .collect::<Option<_>>()
        .unwrap_or_default();
    let wheres: Vec<String> = u
        .cols
        .iter()
        .zip(&prims)
        .enumerate()
        .map(|(i, (c, p))| format!("{} = ${}::text::{}", qi(c), i + 1, sql_type(*p)))
        .collect();
    let select: Vec<String> = l
        .key
        .iter()
        .map(|c| format!("{}::text", qi(&c.name)))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {} LIMIT 1",
        select.join(", "),
        qi(&l.table),
        wheres.join(" AND ")
    );
    for row in rows.iter().filter(|r| r.layout.model == l.model) {
        let Some(values) = row.index_texts(index) else {
            continue;
        };
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let Some(found) = tx.query_opt(&sql, &params)? else {
            continue;
        };
        let existing: Vec<serde_json::Value> = l
            .key
            .iter()
            .enumerate()
            .map(|(i, c)| from_text(found.get::<_, Option<String>>(i).as_deref(), c.prim))
            .collect();
        let (_, incoming) = row.describe();
        let existing = key_display(l, &existing);
        if existing == incoming {
            continue;
        }
        return Ok(Some(StoreError::IndexConflict {
            model: l.model.clone(),
            index: format!("({})", u.edges.join(", ")),
            value: values
                .iter()
                .zip(&prims)
                .map(|(v, p)| cut(&canonical_json(&from_text(Some(v), *p)), 100))
                .collect::<Vec<_>>()
                .join(", "),
            existing,
            incoming,
        }));
    }
    Ok(None)
}
