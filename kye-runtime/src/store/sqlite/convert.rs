//! Between JSON and SQL values: a record's edges as bound arguments of their columns' types,
//! and stored columns read back as JSON.

use rusqlite::types::{ToSql, ToSqlOutput, Value as Sql, ValueRef};
use serde_json::Value;

use crate::store::layout::{EdgeLayout, ModelLayout, Prim};
use crate::store::values::{self, column_value, edge_values, ColValue};
use crate::store::StoreError;

pub(super) use crate::store::values::with_key;

/// A JSON value as an SQL value of the column's type, or why it does not fit (the shared
/// [`column_value`] in SQLite's terms).
pub(super) fn to_sql(v: &Value, prim: Prim) -> Result<Sql, String> {
    column_value(v, prim).map(|c| to_arg_value(c).to_sql_value())
}

/// A shared column value as an argument, strings still borrowed.
fn to_arg_value(c: ColValue<'_>) -> Arg<'_> {
    Arg::Value(match c {
        ColValue::Str(s) => return Arg::Text(s),
        ColValue::Null => Sql::Null,
        ColValue::Text(t) => Sql::Text(t),
        ColValue::Int(i) => Sql::Integer(i),
        ColValue::Real(f) => Sql::Real(f),
        ColValue::Bool(b) => Sql::Integer(i64::from(b)),
    })
}

/// One SQL argument of a record being stored: text borrowed from the record, or a value
/// converted from it. Binding it copies nothing until SQLite copies the bytes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg<'a> {
    Text(&'a str),
    Value(Sql),
}

impl Arg<'_> {
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Arg::Value(Sql::Null))
    }

    /// An owned copy (for messages and comparisons on error paths).
    pub(super) fn to_sql_value(&self) -> Sql {
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
pub(super) fn to_sql_values(args: &[Arg<'_>]) -> Vec<Sql> {
    args.iter().map(Arg::to_sql_value).collect()
}

/// An SQL value read back as JSON.
pub(super) fn from_sql(v: ValueRef<'_>, prim: Prim) -> Value {
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

pub(super) fn sql_to_json(v: &Sql) -> Value {
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

/// The SQL values of an edge's columns for one value of the edge.
pub(super) fn edge_cols_sql(
    model: &str,
    e: &EdgeLayout,
    v: Option<&Value>,
) -> Result<Vec<Sql>, StoreError> {
    let mut args = Vec::with_capacity(e.cols.len());
    edge_args(model, e, v, &mut args)?;
    Ok(to_sql_values(&args))
}

/// Appends the arguments of an edge's columns for one value of the edge to `out`.
pub(super) fn edge_args<'a>(
    model: &str,
    e: &EdgeLayout,
    v: Option<&'a Value>,
    out: &mut Vec<Arg<'a>>,
) -> Result<(), StoreError> {
    let mut values = Vec::with_capacity(e.cols.len());
    edge_values(model, e, v, &mut values)?;
    out.extend(values.into_iter().map(to_arg_value));
    Ok(())
}

/// `id = 25` or `(year, month) = (2024, 1)`, values cut to 100 characters (for messages).
pub(super) fn key_display(l: &ModelLayout, vals: &[Sql]) -> String {
    values::key_display(l, &vals.iter().map(sql_to_json).collect::<Vec<_>>())
}

pub(super) fn json_to_sql(v: &Value, prim: Prim) -> Sql {
    to_sql(v, prim).unwrap_or(Sql::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

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
