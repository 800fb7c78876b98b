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
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }

    /// Appends [`IndexKey::canonical`] to `out` (which callers reuse between keys).
    pub(crate) fn write_canonical(&self, out: &mut String) {
        out.push('{');
        for (i, (e, v)) in self.edges.iter().zip(&self.values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            put_json_string(e, out);
            out.push(':');
            write_canonical(v, out);
        }
        out.push('}');
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

/// Where canonical JSON text goes: a `String`, or the SHA-256 of a content hash.
pub(crate) trait Sink {
    /// Appends `s`.
    fn put(&mut self, s: &str);
}

impl Sink for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

/// Adapts a [`Sink`] to `fmt::Write`, for the rare numbers written with `Display`.
struct FmtSink<'a, S: Sink>(&'a mut S);

impl<S: Sink> fmt::Write for FmtSink<'_, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s);
        Ok(())
    }
}

/// Size of [`HashSink`]'s buffer: most records hash in a few updates.
const HASH_BUF: usize = 512;

/// Feeds text to SHA-256 through a stack buffer, so the many small pieces of canonical JSON
/// become a few large hasher updates.
struct HashSink {
    hasher: Sha256,
    buf: [u8; HASH_BUF],
    len: usize,
}

impl HashSink {
    fn new() -> Self {
        HashSink {
            hasher: Sha256::new(),
            buf: [0; HASH_BUF],
            len: 0,
        }
    }

    /// The digest of everything put so far.
    fn finish(mut self) -> impl AsRef<[u8]> {
        self.hasher.update(&self.buf[..self.len]);
        self.hasher.finalize()
    }
}

impl Sink for HashSink {
    fn put(&mut self, s: &str) {
        let b = s.as_bytes();
        if self.len + b.len() > HASH_BUF {
            self.hasher.update(&self.buf[..self.len]);
            self.len = 0;
            if b.len() > HASH_BUF {
                self.hasher.update(b);
                return;
            }
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

/// Hex digits as strings, for `\u00XX` escapes.
const HEX_DIGITS: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
];

/// Writes `s` as a JSON string exactly as `serde_json` does: `"` and `\` escaped, control
/// characters as `\b \t \n \f \r` or `\u00xx`, everything else (incl. non-ASCII) as is.
/// Runs without escapes are written in one piece.
fn put_json_string(s: &str, out: &mut impl Sink) {
    out.put("\"");
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `start..i` lies on character boundaries.
        out.put(&s[start..i]);
        if short.is_empty() {
            out.put("\\u00");
            out.put(HEX_DIGITS[usize::from(b >> 4)]);
            out.put(HEX_DIGITS[usize::from(b & 15)]);
        } else {
            out.put(short);
        }
        start = i + 1;
    }
    out.put(&s[start..]);
    out.put("\"");
}

/// Writes a number canonically: integral numbers as integers, others as `serde_json` does.
fn put_number(n: &serde_json::Number, out: &mut impl Sink) {
    match as_integral(n) {
        Some(i) => out.put(itoa::Buffer::new().format(i)),
        None => {
            // Writing into a `Sink` cannot fail.
            let _ = fmt::write(&mut FmtSink(out), format_args!("{n}"));
        }
    }
}

/// Writes `v` as canonical JSON: object keys sorted, integral numbers as integers, no spaces.
pub(crate) fn write_canonical(v: &Value, out: &mut impl Sink) {
    match v {
        Value::Null => out.put("null"),
        Value::Bool(b) => out.put(if *b { "true" } else { "false" }),
        Value::Number(n) => put_number(n, out),
        Value::String(s) => put_json_string(s, out),
        Value::Array(a) => {
            out.put("[");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.put(",");
                }
                write_canonical(x, out);
            }
            out.put("]");
        }
        Value::Object(o) => {
            out.put("{");
            // serde_json's default map is sorted already; an insertion-ordered one is not.
            if o.keys().is_sorted() {
                for (i, (k, x)) in o.iter().enumerate() {
                    put_entry(i, k, x, out);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = o.iter().collect();
                entries.sort_unstable_by_key(|(k, _)| *k);
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    put_entry(i, k, x, out);
                }
            }
            out.put("}");
        }
    }
}

/// Writes the `i`-th entry `"k":x` of a canonical object.
fn put_entry(i: usize, k: &str, x: &Value, out: &mut impl Sink) {
    if i > 0 {
        out.put(",");
    }
    put_json_string(k, out);
    out.put(":");
    write_canonical(x, out);
}

/// Canonical JSON text of `v`.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

/// The content hash stored with every record: `sha256:` + hex SHA-256 of its canonical JSON.
/// Two records with the same content have the same hash whatever their key order.
///
/// The canonical text is streamed into the hasher, never built as a whole.
pub fn content_hash(v: &Value) -> String {
    let mut sink = HashSink::new();
    write_canonical(v, &mut sink);
    let digest = sink.finish();
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in digest.as_ref() {
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
    use serde_json::{json, Map};

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

    /// The canonical JSON writer before it streamed (a `String` per scalar), kept as the
    /// reference the stored hashes were computed with.
    fn old_write_canonical(v: &Value, out: &mut String) {
        let json_string = |s: &str| serde_json::to_string(s).unwrap();
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
                    old_write_canonical(x, out);
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
                    old_write_canonical(&o[k], out);
                }
                out.push('}');
            }
        }
    }

    fn old_content_hash(v: &Value) -> String {
        let mut text = String::new();
        old_write_canonical(v, &mut text);
        let digest = Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    #[test]
    fn streaming_hash_matches_the_string_based_one() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let long = "x\"y\\z\u{1}é".repeat(200);
        let values = [
            json!(null),
            json!(true),
            json!(0),
            json!(-17),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(25.0),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(2.5e-8),
            json!(9007199254740993.0),
            json!(""),
            json!(every_ascii),
            json!("tab\tnewline\nquote\"backslash\\ bell\u{7} del\u{7f}"),
            json!("unicode: pokémon ✓ 日本 🦀 \u{2028}\u{fffd}"),
            json!(long),
            json!([1, 2.0, "3", [null, {}], []]),
            json!({"z": 1, "a": {"y": [1, {"b": 2, "a": 1}], "x": "é"}, "m\"k": null, "é": 1, "e": 2}),
            json!({"id": 25, "name": "pikachu", "types": [{"name": "electric"}], "w": 60.5}),
        ];
        for v in &values {
            let mut old = String::new();
            old_write_canonical(v, &mut old);
            assert_eq!(canonical_json(v), old, "{v}");
            assert_eq!(content_hash(v), old_content_hash(v), "{v}");
        }
        // Every character that might need escaping, alone and between others.
        for c in (0u32..0x100).filter_map(char::from_u32) {
            let v = json!(format!("a{c}b{c}"));
            assert_eq!(content_hash(&v), old_content_hash(&v), "{c:?}");
        }
        // Objects with keys in any order (as an insertion-ordered map would give).
        let mut unsorted = Map::new();
        for k in ["b", "a", "é", "A", "", "ab"] {
            unsorted.insert(k.to_string(), json!(k));
        }
        let v = Value::Object(unsorted);
        assert_eq!(content_hash(&v), old_content_hash(&v));
    }
}
