//! JSON bodies parsed into [`serde_json::Value`] with duplicate object keys found on the way.
//!
//! `serde_json` keeps the last of two equal keys in one object (`{"a": 1, "a": 2}` reads as
//! `{"a": 2}`) and says nothing. [`parse_value`] builds the same value in one pass and lists
//! where that happened, so the runtime can warn naming the model, key and field.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Duplicate keys listed per body; more are counted.
pub const MAX_LISTED: usize = 10;

/// Where a body repeated a key: the path of the repeated field (`vitals.temperature_c`,
/// `results[3].name`), the value dropped (the first) and the one kept (the last).
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateKey {
    /// Path of the field inside the body.
    pub path: String,
    /// The earlier value, which serde_json would have dropped silently.
    pub dropped: Value,
    /// The value kept.
    pub kept: Value,
}

/// The duplicate keys of one body: the first ten (`MAX_LISTED`), and how many in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Duplicates {
    /// The first ones, in body order.
    pub listed: Vec<DuplicateKey>,
    /// How many there were in all.
    pub total: usize,
}

impl Duplicates {
    /// True when the body repeated no key.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Duplicate keys found in the bodies a fetcher parsed during one call (shared between the
/// runtime and the fetcher's [`Context`](crate::Context)).
#[derive(Debug, Default)]
pub struct DuplicateNotes(Mutex<Vec<(String, Duplicates)>>);

impl DuplicateNotes {
    /// Records the duplicates of the body fetched from `url`.
    pub fn add(&self, url: &str, d: Duplicates) {
        if !d.is_empty() {
            let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
            // One call parses few bodies; keep the first ones if a fetcher parses many.
            if v.len() < MAX_LISTED {
                v.push((url.to_string(), d));
            }
        }
    }

    /// The notes taken so far (URL, duplicates), emptying them.
    pub fn take(&self) -> Vec<(String, Duplicates)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A shared, empty notes book.
pub(crate) fn notes() -> Arc<DuplicateNotes> {
    Arc::new(DuplicateNotes::default())
}

/// Validator-style warnings (kind `UnknownEdge`, without an example, so they are logged and
/// shown by `get` but are not drift rows) for the duplicate keys noted while fetching
/// `model` `key`.
pub(crate) fn warnings(
    model: &str,
    key: &str,
    notes: Vec<(String, Duplicates)>,
) -> Vec<kye_lang::validate::ValidationError> {
    use kye_lang::validate::{ErrorKind, ValidationError};
    let shown = |v: &Value| {
        let t = v.to_string();
        match t.char_indices().nth(kye_lang::validate::MAX_VALUE_CHARS) {
            None => t,
            Some((i, _)) => format!("{}…", &t[..i]),
        }
    };
    let mut out = Vec::new();
    for (url, d) in notes {
        for dup in &d.listed {
            let field = dup.path.rsplit(['.', ']']).next().unwrap_or(&dup.path);
            let mut w = ValidationError::new(
                ErrorKind::UnknownEdge,
                model,
                format!(
                    "{model} {key}: the response from {url} repeats the key '{field}' at {}; \
                     the last value ({}) was used, the earlier one ({}) dropped",
                    dup.path,
                    shown(&dup.kept),
                    shown(&dup.dropped)
                ),
            );
            w.edges.push(field.to_string());
            w.path = Some(dup.path.clone());
            w.value = Some(shown(&dup.kept));
            out.push(w);
        }
        if d.total > d.listed.len() {
            out.push(ValidationError::new(
                ErrorKind::UnknownEdge,
                model,
                format!(
                    "{model} {key}: the response from {url} repeats {} more keys (the last value of each was used)",
                    d.total - d.listed.len()
                ),
            ));
        }
    }
    out
}

/// Parses `body` as JSON like `serde_json::from_slice::<Value>` (same value, same errors,
/// same recursion limit) and lists the keys an object repeated.
pub fn parse_value(body: &[u8]) -> serde_json::Result<(Value, Duplicates)> {
    parse_value_at(body, "")
}

/// [`parse_value`] for the value of top-level field `field` (paths start with `field`; none
/// when it is empty).
pub(crate) fn parse_value_at(body: &[u8], field: &str) -> serde_json::Result<(Value, Duplicates)> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut state = State::default();
    if !field.is_empty() {
        state.path.push(Seg::Key(field.to_string()));
    }
    let value = Node { state: &mut state }.deserialize(&mut de)?;
    de.end()?;
    Ok((value, state.dups))
}

#[derive(Default)]
struct State {
    /// The path to the value being parsed: object keys and array positions.
    path: Vec<Seg>,
    dups: Duplicates,
}

enum Seg {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

struct Node<'s> {
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            self.state.path.push(Seg::Index(out.len()));
            let next = seq.next_element_seed(Node {
                state: &mut *self.state,
            });
            self.state.path.pop();
            match next? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.state.path.push(Seg::Key(key));
            let value = map.next_value_seed(Node {
                state: &mut *self.state,
            });
            let Some(Seg::Key(key)) = self.state.path.pop() else {
                unreachable!("the key pushed above")
            };
            let value = value?;
            // One lookup per key, as serde_json's own `insert`: a repeated key is found by the
            // insertion itself.
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(mut slot) => {
                    let dups = &mut self.state.dups;
                    dups.total += 1;
                    if dups.listed.len() < MAX_LISTED {
                        self.state.path.push(Seg::Key(slot.key().clone()));
                        let path = path_text(&self.state.path);
                        self.state.path.pop();
                        let kept = value.clone();
                        let dropped = slot.insert(value);
                        self.state.dups.listed.push(DuplicateKey {
                            path,
                            dropped,
                            kept,
                        });
                    } else {
                        slot.insert(value);
                    }
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_equal_serde_json_and_duplicates_are_listed() {
        let body = br#"{"id": 1, "vitals": {"t": 38.1, "hr": 120, "t": 38.4}, "l": [{"a": 1, "a": "x"}], "id": 2}"#;
        let (v, d) = parse_value(body).expect("valid JSON");
        let plain: Value = serde_json::from_slice(body).expect("valid JSON");
        assert_eq!(v, plain);
        assert_eq!(d.total, 3);
        let paths: Vec<&str> = d.listed.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(paths, ["vitals.t", "l[0].a", "id"]);
        assert_eq!(d.listed[0].dropped, json!(38.1));
        assert_eq!(d.listed[0].kept, json!(38.4));
        assert_eq!(d.listed[1].kept, json!("x"));
    }

    #[test]
    fn errors_and_limits_match_serde_json() {
        for body in [
            &b"{\"a\": 1"[..],
            b"[1, 2,]",
            b"{} x",
            b"1e400",
            b"\"\\ud800\"",
        ] {
            let ours = parse_value(body).map(|(v, _)| v).map_err(|e| e.classify());
            let theirs = serde_json::from_slice::<Value>(body).map_err(|e| e.classify());
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            parse_value(deep.as_bytes()).is_err(),
            "recursion limit kept"
        );
        let many: String = format!(
            "{{{}}}",
            (0..50).map(|_| "\"k\": 1").collect::<Vec<_>>().join(",")
        );
        let (_, d) = parse_value(many.as_bytes()).expect("valid JSON");
        assert_eq!((d.total, d.listed.len()), (49, MAX_LISTED));
    }
}
