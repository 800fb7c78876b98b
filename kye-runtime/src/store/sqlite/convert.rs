//! Between JSON and SQL values: a record's edges as bound arguments of their columns' types,
//! and stored columns read back as JSON.

use rusqlite::types::{ToSql, ToSqlOutput, Value as Sql, ValueRef};
use serde_json::Value;

use crate::store::key::{as_integral, canonical_json, cut};
use crate::store::layout::{EdgeLayout, ModelLayout, Prim};
use crate::store::records::col_values;
use crate::store::StoreError;

/// A JSON value as an SQL value of the column's type, or why it does not fit.
pub(super) fn to_sql(v: &Value, prim: Prim) -> Result<Sql, String> {
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

/// [`to_sql`] borrowing strings stored as text instead of copying them.
pub(super) fn to_arg(v: &Value, prim: Prim) -> Result<Arg<'_>, String> {
    match (v, prim) {
        (Value::String(s), Prim::String) => Ok(Arg::Text(s)),
        _ => to_sql(v, prim).map(Arg::Value),
    }
}

pub(super) fn number_sql(n: &serde_json::Number) -> Sql {
    match as_integral(n) {
        Some(i) => Sql::Integer(i),
        None => Sql::Real(n.as_f64().unwrap_or(f64::NAN)),
    }
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
    for (c, x) in col_values(e, v) {
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

/// `id = 25` or `(year, month) = (2024, 1)`, values cut to 100 characters (for messages).
pub(super) fn key_display(l: &ModelLayout, vals: &[Sql]) -> String {
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
pub(super) fn with_key(e: StoreError, key: impl FnOnce() -> String) -> StoreError {
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
