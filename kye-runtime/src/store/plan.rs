//! What `prepare` decides, the same for every store: the layouts of a schema's models, checked
//! against each other and against the stored ones, and for each model whether its tables are
//! created, kept, migrated (additive changes) or refused (incompatible changes). A store
//! carries the decision out in its own terms: SQL DDL for SQLite, nothing for JSON documents.

use std::collections::HashMap;
use std::path::Path;

use kye_lang::Schema;

use super::layout::{check_tables, layouts_of, Col, EdgeLayout, ModelLayout, Prim, Unique};
use super::StoreError;

/// What `prepare` does to one model's storage.
#[derive(Debug)]
pub(crate) struct Step {
    /// The model's layout under the new schema.
    pub layout: ModelLayout,
    /// Its stored layout, when the model is stored.
    pub old: Option<ModelLayout>,
    /// What to do.
    pub action: Action,
}

/// What a schema means for one model's stored data.
#[derive(Debug)]
pub(crate) enum Action {
    /// Not stored yet: create its tables.
    Create,
    /// Stored with this very layout: nothing to do.
    Keep,
    /// Stored in a compatible shape: apply these additive changes (maybe none, when only the
    /// recorded layout changes) and record the new layout.
    Migrate(Vec<Change>),
    /// Incompatible with what is stored: the edge concerned, if one is, and why. Refused while
    /// the old tables hold records (see [`refused`]); tables holding nothing are rebuilt.
    Refuse {
        edge: Option<String>,
        message: String,
    },
}

impl Step {
    /// Tables of the new layout that the stored one does not have (compared ignoring ASCII
    /// case, as SQL does): a store checks that no table of that name exists that it did not
    /// create before creating them.
    pub(crate) fn new_tables(&self) -> impl Iterator<Item = &str> {
        let old = self
            .old
            .as_ref()
            .map(ModelLayout::tables)
            .unwrap_or_default();
        self.layout
            .tables()
            .into_iter()
            .filter(move |t| !old.iter().any(|o| o.eq_ignore_ascii_case(t)))
    }
}

/// The decisions of one `prepare`.
#[derive(Debug)]
pub(crate) struct Preparation {
    /// One step per model of the schema that has tables of its own, in schema order.
    pub steps: Vec<Step>,
}

impl Preparation {
    /// True when some model stores value objects (stores holding one need format 2).
    pub(crate) fn stores_value_objects(&self) -> bool {
        self.steps.iter().any(|s| s.layout.has_value_objects())
    }
}

/// Decides what storing `schema` means for a store holding the `stored` layouts. Names that
/// cannot be stored and tables that would clash (also with stored models left out of this
/// schema, whose tables are kept) are refused before anything else.
pub(crate) fn prepare(
    schema: &Schema,
    stored: &HashMap<String, ModelLayout>,
) -> Result<Preparation, StoreError> {
    let layouts = layouts_of(schema)?;
    let mut all = layouts.clone();
    let mut left_out: Vec<&ModelLayout> = stored
        .values()
        .filter(|l| schema.model(&l.model).is_none())
        .collect();
    left_out.sort_by(|a, b| a.model.cmp(&b.model));
    all.extend(left_out.into_iter().cloned());
    check_tables(&all)?;
    let steps = layouts
        .into_iter()
        .map(|layout| {
            let old = stored.get(&layout.model).cloned();
            let action = match &old {
                None => Action::Create,
                Some(old) => plan(old, &layout),
            };
            Step {
                layout,
                old,
                action,
            }
        })
        .collect();
    Ok(Preparation { steps })
}

/// The error for a refused step: what changed, that the store at `location` was left
/// unchanged, and what to do (`tool` is the store's own client, e.g. `sqlite3`).
pub(crate) fn refused(
    step: &Step,
    edge: Option<String>,
    message: &str,
    location: &Path,
    tool: &str,
) -> StoreError {
    let l = &step.layout;
    StoreError::SchemaChange {
        model: l.model.clone(),
        edge,
        message: format!(
            "{message}. {} holds records of {} in the old shape and was left unchanged. \
             Restore the old definition, or store into a new database file (--db), \
             or export and drop the table {:?} (and its {}__* child tables) with {tool} \
             to start over.",
            location.display(),
            l.model,
            l.table,
            l.table
        ),
    }
}

fn refuse(edge: Option<String>, message: String) -> Action {
    Action::Refuse { edge, message }
}

/// An additive change to apply.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// New single-valued optional edge: add its columns.
    AddColumns(EdgeLayout),
    /// New multi-valued edge: create its child table.
    AddTable(EdgeLayout),
    /// Something that changes only the recorded layout (e.g. an edge became optional).
    Relax,
}

fn cols_sig(cols: &[Col]) -> Vec<(String, Vec<String>, Prim)> {
    cols.iter()
        .map(|c| (c.name.to_ascii_lowercase(), c.path.clone(), c.prim))
        .collect()
}

/// Compares the stored layout with the schema's.
fn plan(old: &ModelLayout, new: &ModelLayout) -> Action {
    if old == new {
        return Action::Keep;
    }
    if old.key_edges != new.key_edges || cols_sig(&old.key) != cols_sig(&new.key) {
        return refuse(
            None,
            format!(
                "the primary index changed from ({}) to ({})",
                old.key_edges.join(", "),
                new.key_edges.join(", ")
            ),
        );
    }
    let sig = |u: &[Unique]| u.iter().map(|u| u.edges.clone()).collect::<Vec<_>>();
    if sig(&old.uniques) != sig(&new.uniques) {
        let show = |u: &[Unique]| {
            u.iter()
                .map(|u| format!("({})", u.edges.join(", ")))
                .collect::<Vec<_>>()
                .join("")
        };
        return refuse(
            None,
            format!(
                "its secondary indexes changed from {} to {}",
                non_empty(show(&old.uniques)),
                non_empty(show(&new.uniques))
            ),
        );
    }
    let mut changes = Vec::new();
    for o in &old.edges {
        match new.edge(&o.name) {
            None => {
                return refuse(
                    Some(o.name.clone()),
                    format!(
                        "the edge ({}) was removed from the schema but is stored",
                        o.ty
                    ),
                )
            }
            Some(n) => {
                if o.value_object != n.value_object {
                    let target = n.target.as_deref().unwrap_or("its model");
                    let message = if n.value_object {
                        format!(
                            "{target} lost its index: it is now a value object, stored with each \
                             record nesting it, but the store holds {target} records of their own \
                             linked by key"
                        )
                    } else {
                        format!(
                            "{target} gained an index: it is now stored as records of its own, but \
                             the store holds its values inside each record nesting it"
                        )
                    };
                    return refuse(Some(o.name.clone()), message);
                }
                if o.multiple != n.multiple
                    || o.target != n.target
                    || cols_sig(&o.cols) != cols_sig(&n.cols)
                    || o.table != n.table
                {
                    let message = match (&o.target, &n.target) {
                        (Some(a), Some(b)) if a == b && o.ty == n.ty => format!(
                            "the key of {a}, which it refers to, changed (stored references \
                             hold the old key)"
                        ),
                        _ => format!("its type changed from {} to {}", o.ty, n.ty),
                    };
                    return refuse(Some(o.name.clone()), message);
                }
                if !o.required && n.required {
                    return refuse(
                        Some(o.name.clone()),
                        format!(
                            "it was made required ({} → {}); stored records may have no value",
                            o.ty, n.ty
                        ),
                    );
                }
                if o != n {
                    changes.push(Change::Relax);
                }
            }
        }
    }
    for n in &new.edges {
        if old.edge(&n.name).is_none() {
            if n.required {
                return refuse(
                    Some(n.name.clone()),
                    format!(
                        "it is a new required edge ({}); stored records have no value for it",
                        n.ty
                    ),
                );
            }
            changes.push(if n.in_child_table() {
                Change::AddTable(n.clone())
            } else {
                Change::AddColumns(n.clone())
            });
        }
    }
    if old.parent_cols != new.parent_cols {
        return refuse(None, "its child table layout changed".to_string());
    }
    Action::Migrate(changes)
}

fn non_empty(s: String) -> String {
    if s.is_empty() {
        "none".to_string()
    } else {
        s
    }
}
