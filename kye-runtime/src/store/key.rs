//! Keys (values of a model's index), canonical JSON and content hashes.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The value of one index of a model: which edges, and their values, in index order.
///
/// `Pokemon.id = 25` is `IndexKey::single("id", 25)`; a composite index `(year, month)` is
/// `IndexKey::new(["year", "month"], [2024, 1])`. Numbers are compared by value, so `25` and
/// `25.0` are the same key.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexKey {
    /// Index edge names, in index order.
    pub edges: Vec<String>,
    /// One value per edge.
    pub values: Vec<Value>,
}

impl IndexKey {
    /// A key over several edges. Extra edges or values beyond the shorter list are ignored.
    pub fn new<E, V>(
        edges: impl IntoIterator<Item = E>,
        values: impl IntoIterator<Item = V>,
    ) -> Self
    where
        E: Into<String>,
        V: Into<Value>,
    {
        let edges: Vec<String> = edges.into_iter().map(Into::into).collect();
        let mut values: Vec<Value> = values.into_iter().map(Into::into).collect();
        values.truncate(edges.len());
        let mut edges = edges;
        edges.truncate(values.len());
        IndexKey { edges, values }
    }

    /// A key over one edge.
    pub fn single(edge: impl Into<String>, value: impl Into<Value>) -> Self {
        IndexKey {
            edges: vec![edge.into()],
            values: vec![value.into()],
        }
    }

    /// The stable text form used in stores: a JSON object in index order with canonical
    /// numbers, e.g. `{"id":25}` or `{"year":2024,"month":1}`.
    pub fn canonical(&self) -> String {
        let mut out = String::from("{");
        for (i, (e, v)) in self.edges.iter().zip(&self.values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(e));
            out.push(':');
            write_canonical(v, &mut out);
        }
        out.push('}');
        out
    }

    /// Parses the text produced by [`IndexKey::canonical`], keeping the edges in written order.
    pub fn from_canonical(text: &str) -> Option<IndexKey> {
        let pairs: OrderedPairs = serde_json::from_str(text).ok()?;
        let (edges, values) = pairs.0.into_iter().unzip();
        Some(IndexKey { edges, values })
    }

    /// The key as a JSON object (edge → value).
    pub fn to_object(&self) -> Value {
        Value::Object(
            self.edges
                .iter()
                .cloned()
                .zip(self.values.iter().map(canonical_value))
                .collect(),
        )
    }
}

impl fmt::Display for IndexKey {
    /// `id = 25`, `name = "pikachu"`, `(year, month) = (2024, 1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vals = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            for (i, v) in self.values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                let mut s = String::new();
                write_canonical(v, &mut s);
                f.write_str(&cut(&s, 200))?;
            }
            Ok(())
        };
        if self.edges.len() == 1 {
            write!(f, "{} = ", self.edges[0])?;
            vals(f)
        } else {
            write!(f, "({}) = (", self.edges.join(", "))?;
            vals(f)?;
            f.write_str(")")
        }
    }
}

/// A JSON object read as a list of pairs in written order (independent of serde_json's
/// `preserve_order` feature).
struct OrderedPairs(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedPairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(OrderedPairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Largest integer an f64 holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// An integral number as i64 when it is one (`25`, `25.0`), else `None`.
pub(crate) fn as_integral(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    if f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_EXACT {
        Some(f as i64)
    } else {
        None
    }
}

/// A copy of `v` with integral numbers written as integers, recursively.
pub(crate) fn canonical_value(v: &Value) -> Value {
    match v {
        Value::Number(n) => match as_integral(n) {
            Some(i) => Value::from(i),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(canonical_value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), canonical_value(v)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// Writes `v` as canonical JSON: object keys sorted, integral numbers as integers, no spaces.
pub(crate) fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match as_integral(n) {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&json_string(s)),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k));
                out.push(':');
                write_canonical(&o[k], out);
            }
            out.push('}');
        }
    }
}

/// Canonical JSON text of `v`.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

/// The content hash stored with every record: `sha256:` + hex SHA-256 of its canonical JSON.
/// Two records with the same content have the same hash whatever their key order.
pub fn content_hash(v: &Value) -> String {
    let digest = Sha256::digest(canonical_json(v).as_bytes());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in digest.iter() {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Text of a scalar key value (for file names and messages): strings as-is, numbers canonical.
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => canonical_json(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_key_is_stable_across_number_forms() {
        assert_eq!(IndexKey::single("id", 25).canonical(), r#"{"id":25}"#);
        assert_eq!(IndexKey::single("id", 25.0).canonical(), r#"{"id":25}"#);
        assert_eq!(IndexKey::single("x", 1.5).canonical(), r#"{"x":1.5}"#);
        let k = IndexKey::new(["year", "month"], [json!(2024), json!("01")]);
        assert_eq!(k.canonical(), r#"{"year":2024,"month":"01"}"#);
        assert_eq!(IndexKey::from_canonical(&k.canonical()).unwrap(), k);
        assert_eq!(k.to_string(), r#"(year, month) = (2024, "01")"#);
    }

    #[test]
    fn hash_ignores_key_order_but_not_content() {
        let a = json!({"id": 1, "name": "a", "t": [1, 2]});
        let b = json!({"t": [1.0, 2], "name": "a", "id": 1.0});
        let c = json!({"id": 1, "name": "b", "t": [1, 2]});
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
        assert!(content_hash(&a).starts_with("sha256:"));
        assert_eq!(content_hash(&a).len(), 7 + 64);
    }
}
