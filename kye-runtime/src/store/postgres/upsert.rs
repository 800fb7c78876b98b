//! The statements that write a model's rows, as few as a batch allows: the server's time per
//! statement (a round trip, a plan, waking the backend and the client) costs as much as
//! writing a few hundred rows, so a batch of new records is one statement per model — the
//! multi-row upsert (`INSERT ... SELECT FROM unnest(...) ON CONFLICT ... DO UPDATE`) with the
//! child rows when every record was new and, for the last model, the batch's other items
//! (key outcomes, rejects, drift, list cursors) as parts of one `WITH`. When some records
//! were there already, their child rows are replaced as a set afterwards: one statement
//! deleting them from every child table, one inserting the child rows of every record. When
//! the writer expects no record to be there (`fresh`, see `write::Expect`), the rows go in by
//! a plain `INSERT` with all their child rows instead, and a stored key fails the statement.

use std::borrow::Cow;
use std::sync::LazyLock;

use postgres::types::ToSql;
use postgres::Transaction;

use crate::store::layout::{ModelLayout, POSITION, SOURCE_COLUMN};

use super::batch::{cached, Cache, Row, Text};
use super::ddl::{inline_cols, q, qi, sql_type};

/// A bound parameter.
pub(crate) type Param<'p> = &'p (dyn ToSql + Sync);

/// One statement with its parameters, numbered from `$1`: run alone, or as a part of a `WITH`
/// (numbered again there, see [`with_parts`]).
pub(crate) struct Part<'p> {
    pub sql: String,
    pub params: Vec<Param<'p>>,
}

impl<'p> Part<'p> {
    /// Runs the statement (a prepared statement, once per connection) and returns its rows.
    pub(crate) fn query(
        &self,
        tx: &mut Transaction<'_>,
        cache: &mut Cache,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let st = cached(tx, cache, &self.sql)?;
        tx.query(&st, &self.params)
    }
}

/// `sql` with every parameter `$n` numbered `$n+by`, leaving quoted identifiers (`"a$1"`) and
/// string literals as they are.
pub(crate) fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(open) => {
                out.push(c);
                // A doubled quote inside closes and opens again: the same text either way.
                if c == open {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                out.push('$');
                out.push_str(&(n + by).to_string());
            }
            None => out.push(c),
        }
    }
    out
}

/// One statement made of `parts`, each a named part of a `WITH` (a data-modifying part runs to
/// its end whether the main query reads it or not), and `main`; the parameters of each are
/// numbered after those before it. Parts must write different tables: PostgreSQL runs them
/// on one snapshot, in no set order.
pub(crate) fn with_parts<'p>(parts: Vec<(String, Part<'p>)>, main: Part<'p>) -> Part<'p> {
    if parts.is_empty() {
        return main;
    }
    let mut params: Vec<Param<'p>> = Vec::new();
    let mut ctes = Vec::with_capacity(parts.len());
    for (name, p) in parts {
        ctes.push(format!("{name} AS ({})", renumber(&p.sql, params.len())));
        params.extend(p.params);
    }
    let sql = format!(
        "WITH {} {}",
        ctes.join(", "),
        renumber(&main.sql, params.len())
    );
    params.extend(main.params);
    Part { sql, params }
}

/// Runs `parts` (statements on different tables) as one statement; nothing when empty.
pub(crate) fn run_parts(
    tx: &mut Transaction<'_>,
    cache: &mut Cache,
    parts: Vec<Part<'_>>,
) -> Result<(), postgres::Error> {
    let mut parts = parts;
    let whole = match parts.len() {
        0 => return Ok(()),
        1 => parts.remove(0),
        _ => with_parts(
            parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("o{i}"), p))
                .collect(),
            Part {
                sql: "SELECT 1".into(),
                params: Vec::new(),
            },
        ),
    };
    whole.query(tx, cache).map(drop)
}

pub(crate) fn text_array<'a>(rows: impl Iterator<Item = &'a Text<'a>>) -> Vec<Option<&'a str>> {
    rows.map(|t| t.as_deref()).collect()
}

/// `SELECT x.a1::numeric, x.a2::text FROM unnest($1::text[], $2::text[]) AS x(a1, a2)`
/// over `prims`, parameters numbered from `first`.
pub(crate) fn unnest_select(prims: &[&str], first: usize) -> String {
    let casts: Vec<String> = prims
        .iter()
        .enumerate()
        .map(|(i, t)| format!("x.a{i}::{t}"))
        .collect();
    let args: Vec<String> = (0..prims.len())
        .map(|i| format!("${}::text[]", first + i))
        .collect();
    let names: Vec<String> = (0..prims.len()).map(|i| format!("a{i}")).collect();
    format!(
        "SELECT {} FROM unnest({}) AS x({})",
        casts.join(", "),
        args.join(", "),
        names.join(", ")
    )
}

/// `WHERE` text matching rows whose `cols` (quoted, with their types) equal one of the rows of
/// text arrays bound from parameter `first` on: `= ANY(array)` for one column (an index scan
/// whatever the table's size), a row comparison with `unnest` for several.
pub(crate) fn matching(cols: &[(String, &str)], first: usize) -> String {
    match cols {
        [(c, t)] => format!("{c} = ANY(${first}::text[]::{t}[])"),
        _ => {
            let types: Vec<&str> = cols.iter().map(|(_, t)| *t).collect();
            format!(
                "({}) IN ({})",
                cols.iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                unnest_select(&types, first)
            )
        }
    }
}

fn params<'p, T: ToSql + Sync>(arrays: &'p [T]) -> Vec<Param<'p>> {
    arrays.iter().map(|a| a as Param<'p>).collect()
}

/// A child table's rows in the batch, as columns (parent key, position, the edge's columns).
struct Child<'a> {
    table: String,
    /// Column names (quoted) and SQL types.
    names: Vec<String>,
    types: Vec<&'a str>,
    cols: Vec<Vec<Option<Cow<'a, str>>>>,
}

/// Writes `rows` (one model's, at most one per key, in the order their locks are taken): the
/// upsert, with the child rows (when every record is new) and `extra` in the same statement;
/// then, when some records were there, the child rows replaced as a set. Returns whether some
/// records were there.
///
/// `fresh`: the writer expects none of the keys to be stored, so the rows go in by a plain
/// `INSERT` with their child rows, which costs the server about a third less than the upsert
/// (no speculative insertion, no `RETURNING`); a key that was stored after all fails the
/// statement with a unique violation and the batch is written again without `fresh`.
pub(crate) fn upsert(
    tx: &mut Transaction<'_>,
    cache: &mut Cache,
    l: &ModelLayout,
    rows: &[&Row<'_>],
    extra: Vec<Part<'_>>,
    fresh: bool,
) -> Result<bool, postgres::Error> {
    if rows.is_empty() {
        return run_parts(tx, cache, extra).map(|()| false);
    }
    let cols: Vec<(&str, &str)> = inline_cols(l)
        .map(|(_, c)| (c.name.as_str(), sql_type(c.prim)))
        .chain([
            ("_kye_run_id", "bigint"),
            ("_kye_fetcher", "text"),
            ("_kye_fetched_at", "timestamptz"),
            ("_kye_hash", "text"),
            (SOURCE_COLUMN, "text"),
        ])
        .collect();
    let types: Vec<&str> = cols.iter().map(|(_, t)| *t).collect();
    let n_inline = cols.len() - 5;
    let mut arrays: Vec<Vec<Option<&str>>> = (0..n_inline)
        .map(|i| text_array(rows.iter().map(|r| &r.inline[i])))
        .collect();
    let runs: Vec<String> = rows.iter().map(|r| r.run.to_string()).collect();
    arrays.push(runs.iter().map(|s| Some(s.as_str())).collect());
    arrays.push(rows.iter().map(|r| Some(r.fetcher.as_ref())).collect());
    arrays.push(rows.iter().map(|r| Some(r.fetched_at.as_str())).collect());
    arrays.push(rows.iter().map(|r| Some(r.hash.as_str())).collect());
    arrays.push(rows.iter().map(|r| r.source.as_deref()).collect());
    let key_cols: Vec<&str> = l.key.iter().map(|c| c.name.as_str()).collect();
    let key_types: Vec<&str> = l.key.iter().map(|c| sql_type(c.prim)).collect();
    let insert_rows = format!(
        "INSERT INTO {} ({}) {}",
        qi(&l.table),
        cols.iter()
            .map(|(n, _)| qi(n))
            .collect::<Vec<_>>()
            .join(", "),
        unnest_select(&types, 1),
    );
    let up = Part {
        sql: if fresh {
            insert_rows
        } else {
            let updates: Vec<String> = cols
                .iter()
                .filter(|(n, _)| !key_cols.contains(n))
                .map(|(n, _)| format!("{0} = EXCLUDED.{0}", qi(n)))
                .collect();
            // `xmax <> 0`: the row was there and is updated (a new row has none), so only
            // those parents can have child rows to replace.
            let returning: Vec<String> = key_cols
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{} AS k{i}", qi(n)))
                .collect();
            format!(
                "{insert_rows} ON CONFLICT ({}) DO UPDATE SET {} RETURNING {}, xmax <> 0 AS existed",
                key_cols
                    .iter()
                    .map(|n| qi(n))
                    .collect::<Vec<_>>()
                    .join(", "),
                updates.join(", "),
                returning.join(", ")
            )
        },
        params: params(&arrays),
    };
    let children = child_rows(l, rows, &key_types);
    let insert = |c: &Child<'_>| {
        format!(
            "INSERT INTO {} ({}) {}",
            c.table,
            c.names.join(", "),
            unnest_select(&c.types, 1)
        )
    };
    let mut parts = vec![("up".to_string(), up)];
    for (i, c) in children.iter().enumerate() {
        // Only when every record was new (one look at `up`, not a join per child row): a
        // record that was there has child rows to delete first, in a statement of its own.
        let sql = if fresh {
            insert(c)
        } else {
            format!(
                "{} WHERE NOT EXISTS (SELECT FROM up WHERE up.existed)",
                insert(c)
            )
        };
        let params = params(&c.cols);
        parts.push((format!("c{i}"), Part { sql, params }));
    }
    for (i, p) in extra.into_iter().enumerate() {
        parts.push((format!("o{i}"), p));
    }
    if fresh {
        let main = Part {
            sql: "SELECT 1".into(),
            params: Vec::new(),
        };
        return with_parts(parts, main).query(tx, cache).map(|_| false);
    }
    let existed_keys: Vec<String> = (0..key_cols.len()).map(|i| format!("k{i}::text")).collect();
    let main = Part {
        sql: format!("SELECT {} FROM up WHERE existed", existed_keys.join(", ")),
        params: Vec::new(),
    };
    let mut existed: Vec<Vec<Option<String>>> = vec![Vec::new(); key_cols.len()];
    for r in with_parts(parts, main).query(tx, cache)? {
        for (i, col) in existed.iter_mut().enumerate() {
            col.push(r.get(i));
        }
    }
    if existed.first().is_none_or(Vec::is_empty) {
        return Ok(false);
    }
    // Some records were there: their child rows are deleted, by a statement after the
    // upsert's (which waited for any writer holding the parent), so it sees what that
    // writer committed; then the child rows of every record are inserted (the new records'
    // were not, above).
    let parent_cols: Vec<(String, &str)> = l
        .parent_cols
        .iter()
        .zip(&key_types)
        .map(|(p, t)| (qi(p), *t))
        .collect();
    let deletes = l
        .edges
        .iter()
        .filter(|e| e.in_child_table())
        .map(|e| Part {
            sql: format!(
                "DELETE FROM {} WHERE {}",
                qi(e.table.as_deref().unwrap_or_default()),
                matching(&parent_cols, 1)
            ),
            params: params(&existed),
        })
        .collect();
    run_parts(tx, cache, deletes)?;
    let inserts = children
        .iter()
        .map(|c| Part {
            sql: insert(c),
            params: params(&c.cols),
        })
        .collect();
    run_parts(tx, cache, inserts).map(|()| true)
}

/// A child row's position as bound text: the first positions made once per process, not once
/// per row.
fn position_text(pos: usize) -> Cow<'static, str> {
    static FIRST: LazyLock<Vec<String>> =
        LazyLock::new(|| (0..256).map(|p| p.to_string()).collect());
    match FIRST.get(pos) {
        Some(text) => Cow::Borrowed(text.as_str()),
        None => Cow::Owned(pos.to_string()),
    }
}

/// The child rows of `rows`, per child table that has any.
fn child_rows<'a>(
    l: &'a ModelLayout,
    rows: &[&'a Row<'a>],
    key_types: &[&'a str],
) -> Vec<Child<'a>> {
    let mut out = Vec::new();
    for (ci, e) in l.edges.iter().filter(|e| e.in_child_table()).enumerate() {
        let width = e.cols.len();
        let nk = l.key.len();
        let mut cols: Vec<Vec<Option<Cow<'a, str>>>> = vec![Vec::new(); nk + 1 + width];
        for r in rows {
            for (pos, item) in r.children[ci].iter().enumerate() {
                for (i, k) in r.key.iter().enumerate() {
                    cols[i].push(k.as_deref().map(Cow::Borrowed));
                }
                cols[nk].push(Some(position_text(pos)));
                for (j, v) in item.iter().enumerate() {
                    cols[nk + 1 + j].push(v.as_deref().map(Cow::Borrowed));
                }
            }
        }
        if cols[nk].is_empty() {
            continue;
        }
        let mut types = key_types.to_vec();
        types.push("integer");
        types.extend(e.cols.iter().map(|c| sql_type(c.prim)));
        let mut names: Vec<String> = l.parent_cols.iter().map(|p| qi(p)).collect();
        names.push(q(POSITION));
        names.extend(e.cols.iter().map(|c| qi(&c.name)));
        out.push(Child {
            table: qi(e.table.as_deref().unwrap_or_default()),
            names,
            types,
            cols,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumber_moves_parameters_and_leaves_quoted_text() {
        assert_eq!(
            renumber("SELECT $1::text[], $10, x.a$2 FROM t", 3),
            "SELECT $4::text[], $13, x.a$5 FROM t"
        );
        // A quoted identifier or a literal may hold `$1` (a hostile model name), with
        // doubled quotes inside.
        assert_eq!(
            renumber(r#"INSERT INTO "a$1""b$2" (c) SELECT '$3''$4', $1"#, 2),
            r#"INSERT INTO "a$1""b$2" (c) SELECT '$3''$4', $3"#
        );
        assert_eq!(renumber("SELECT $$x$$, $", 1), "SELECT $$x$$, $");
    }

    #[test]
    fn with_parts_numbers_each_part_after_the_last() {
        let (a, b, c) = (1i32, 2i32, 3i32);
        fn part<'p>(sql: &str, params: Vec<Param<'p>>) -> Part<'p> {
            Part {
                sql: sql.to_string(),
                params,
            }
        }
        let whole = with_parts(
            vec![
                (
                    "up".into(),
                    part("INSERT INTO t SELECT $1, $2", vec![&a, &b]),
                ),
                ("o0".into(), part("INSERT INTO u SELECT $1", vec![&c])),
            ],
            part("SELECT * FROM up WHERE k = $1", vec![&a]),
        );
        assert_eq!(
            whole.sql,
            "WITH up AS (INSERT INTO t SELECT $1, $2), o0 AS (INSERT INTO u SELECT $3) \
             SELECT * FROM up WHERE k = $4"
        );
        assert_eq!(whole.params.len(), 4);
        let alone = with_parts(Vec::new(), part("SELECT $1", vec![&a]));
        assert_eq!(alone.sql, "SELECT $1");
    }
}
