//! Key values: what a request such as `Pokemon.id = 25` carries for the edges of one index,
//! as written in requests and stored as JSON.

use std::fmt;

use serde::{Deserialize as _, Serialize};

use crate::error::Error;

/// One value of a key: what a request such as `Pokemon.id = 25` carries for one index edge.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum KeyValue {
    /// An integer (the value of a `Number` index edge).
    Int(i64),
    /// A number with a fractional part (never valid for an index, kept for messages).
    Float(f64),
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
}

impl KeyValue {
    /// What kind of value this is, for messages: `"integer"`, `"number"`, `"string"`, `"boolean"`.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyValue::Int(_) => "integer",
            KeyValue::Float(_) => "number",
            KeyValue::String(_) => "string",
            KeyValue::Bool(_) => "boolean",
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeyValue::Int(i) => serde_json::Value::from(*i),
            KeyValue::Float(f) => serde_json::Value::from(*f),
            KeyValue::String(s) => serde_json::Value::from(s.as_str()),
            KeyValue::Bool(b) => serde_json::Value::from(*b),
        }
    }
}

impl fmt::Display for KeyValue {
    /// Formats the value as it is written in a request: strings are quoted and escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(i) => write!(f, "{i}"),
            KeyValue::Float(x) => write!(f, "{x:?}"),
            KeyValue::String(s) => write!(f, "{s:?}"),
            KeyValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

macro_rules! key_value_from {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<$t> for KeyValue {
            fn from(v: $t) -> Self { KeyValue::$variant(v.into()) }
        }
    )*};
}
key_value_from!(Int: i64, i32, i16, i8, u32, u16, u8);
key_value_from!(Float: f64, f32);
key_value_from!(String: String, &str, Box<str>);
key_value_from!(Bool: bool);

/// The values of one key, one per edge of the index it belongs to (one value for `Pokemon.id`,
/// three for `Date(year, month, day)`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Key {
    pub(super) values: Vec<KeyValue>,
}

impl Key {
    /// A key from its values, in index-edge order.
    pub fn new(values: Vec<KeyValue>) -> Self {
        Key { values }
    }

    /// A key of one value.
    pub fn single(value: impl Into<KeyValue>) -> Self {
        Key {
            values: vec![value.into()],
        }
    }

    /// The values, in index-edge order.
    pub fn values(&self) -> &[KeyValue] {
        &self.values
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True for a key with no values (never produced by request resolution).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The key as JSON: the single value, or an array for composite keys.
    pub fn to_json(&self) -> serde_json::Value {
        match self.values.as_slice() {
            [one] => one.to_json(),
            many => serde_json::Value::Array(many.iter().map(KeyValue::to_json).collect()),
        }
    }
}

impl fmt::Display for Key {
    /// `25`, `"pikachu"`, or `(2024, 1, 31)` for composite keys: the request syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.values.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("(")?;
                for (i, v) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl From<KeyValue> for Key {
    fn from(v: KeyValue) -> Self {
        Key { values: vec![v] }
    }
}

/// A key value that cannot be given to a fetcher parameter (wrong kind, out of range,
/// wrong number of values).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    message: String,
}

impl KeyError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        KeyError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::permanent(e.message)
    }
}

/// Deserializes an `i64` index field, accepting integral floats (`25.0`) as stored JSON may
/// carry them.
pub fn deserialize_index_int<'de, D>(deserializer: D) -> Result<i64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let v = serde_json::Number::deserialize(deserializer)?;
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f)
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) =>
        {
            Ok(f as i64)
        }
        _ => Err(D::Error::custom(format!("expected an integer, found {v}"))),
    }
}

/// `Pokemon.id`, or `Date(year, month, day)` for composite identifiers.
pub(crate) fn identifier_text<S: AsRef<str>>(model: &str, edges: &[S]) -> String {
    match edges {
        [one] => format!("{model}.{}", one.as_ref()),
        many => {
            let list: Vec<&str> = many.iter().map(AsRef::as_ref).collect();
            format!("{model}({})", list.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_display_is_request_syntax() {
        assert_eq!(Key::single(25i64).to_string(), "25");
        assert_eq!(Key::single("pika\"chu").to_string(), "\"pika\\\"chu\"");
        let date = Key::new(vec![2024i64.into(), 1i64.into(), 31i64.into()]);
        assert_eq!(date.to_string(), "(2024, 1, 31)");
        assert_eq!(date.to_json(), serde_json::json!([2024, 1, 31]));
    }
}
