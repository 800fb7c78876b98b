//! What a JSON value means in a column of a kye type, for every SQL store: the value a column
//! holds (or why it does not fit), the values of an edge's columns, a stored value read back
//! as JSON, and a key shown in messages. Each SQL store binds these in its own dialect.

use serde_json::Value;

use super::key::{as_integral, canonical_json, cut};
use super::layout::{EdgeLayout, ModelLayout, Prim};
use super::records::col_values;
use super::StoreError;

/// The value a column holds for one JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ColValue<'a> {
    Null,
    /// Text borrowed from the record.
    Str(&'a str),
    /// Text made from the value (a number or boolean stored as String, canonical JSON).
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

fn not_a(prim: Prim, v: &Value) -> String {
    format!(
        "expected {}, got {}",
        prim.name(),
        cut(&canonical_json(v), 80)
    )
}

/// A number as a column value: integral values as integers, others as reals.
pub(crate) fn number_value(n: &serde_json::Number) -> ColValue<'static> {
    match as_integral(n) {
        Some(i) => ColValue::Int(i),
        None => ColValue::Real(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A JSON value as the value of a column of type `prim`, or why it does not fit. Strings
/// stay borrowed. A string holding a number fits a Number column (`"25"`), `"true"` and
/// `"false"` a Boolean one; a number or boolean fits a String column as its text.
pub(crate) fn column_value(v: &Value, prim: Prim) -> Result<ColValue<'_>, String> {
    Ok(match (v, prim) {
        (Value::Null, _) => ColValue::Null,
        (_, Prim::Json) => ColValue::Text(canonical_json(v)),
        (Value::String(s), Prim::String) => ColValue::Str(s),
        (Value::Number(n), Prim::String) => {
            ColValue::Text(canonical_json(&Value::Number(n.clone())))
        }
        (Value::Bool(b), Prim::String) => ColValue::Text(b.to_string()),
        (Value::Number(n), Prim::Number) => number_value(n),
        (Value::String(s), Prim::Number) => {
            match serde_json::from_str::<serde_json::Number>(s.trim()) {
                Ok(n) => number_value(&n),
                Err(_) => match s.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => match serde_json::Number::from_f64(f) {
                        Some(n) => number_value(&n),
                        None => return Err(not_a(prim, v)),
                    },
                    _ => return Err(not_a(prim, v)),
                },
            }
        }
        (Value::Bool(b), Prim::Boolean) => ColValue::Bool(*b),
        (Value::String(s), Prim::Boolean) if s.eq_ignore_ascii_case("true") => ColValue::Bool(true),
        (Value::String(s), Prim::Boolean) if s.eq_ignore_ascii_case("false") => {
            ColValue::Bool(false)
        }
        _ => return Err(not_a(prim, v)),
    })
}

/// Appends the values of an edge's columns for one value of the edge to `out`; an object or
/// array where a primitive goes is an [`StoreError::InvalidValue`] naming model and edge (the
/// key is filled in by [`with_key`]).
pub(crate) fn edge_values<'a>(
    model: &str,
    e: &EdgeLayout,
    v: Option<&'a Value>,
    out: &mut Vec<ColValue<'a>>,
) -> Result<(), StoreError> {
    let invalid = |message: String| StoreError::InvalidValue {
        model: model.to_string(),
        key: String::new(),
        edge: e.name.clone(),
        message,
    };
    for (c, x) in col_values(e, v) {
        let value = match x {
            None => ColValue::Null,
            Some(x @ (Value::Object(_) | Value::Array(_))) if c.prim != Prim::Json => {
                let what = if c.path.is_empty() {
                    c.prim.name().to_string()
                } else {
                    format!("{} at {}", c.prim.name(), c.path.join("."))
                };
                return Err(invalid(format!(
                    "expected {what}, got {}",
                    cut(&canonical_json(x), 80)
                )));
            }
            Some(x) => column_value(x, c.prim).map_err(invalid)?,
        };
        out.push(value);
    }
    Ok(())
}

/// `id = 25` or `(year, month) = (2024, 1)`, values cut to 100 characters (for messages).
pub(crate) fn key_display(l: &ModelLayout, vals: &[Value]) -> String {
    let show = |v: &Value| cut(&canonical_json(v), 100);
    if l.key.len() == 1 {
        format!(
            "{} = {}",
            l.key[0].name,
            vals.first().map(show).unwrap_or_default()
        )
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
pub(crate) fn with_key(e: StoreError, key: impl FnOnce() -> String) -> StoreError {
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
