//! Reading large JSON documents fast: [`JsonDoc`], what [`Context::get_json_doc`] returns.
//!
//! A fetcher usually maps a few fields of a large document: 17 edges of a 250 KB PokeAPI
//! Pokémon whose `moves` alone are 240 KB. Parsing the whole body into a
//! [`serde_json::Value`] builds (and then drops) a tree of every one of those fields; most of
//! the CPU of a fetch goes there. A [`JsonDoc`] reads the body once, without building
//! anything, and remembers where each top-level field starts and ends; the fetcher then
//! parses only the fields it maps, into typed structs ([`JsonDoc::get`]) or small values
//! ([`JsonDoc::value`]). A field that is never read costs what serde's
//! [`serde::de::IgnoredAny`] costs: one pass over its bytes.
//!
//! Fields the fetcher neither reads nor skips on purpose are the source's news:
//! [`JsonDoc::pass_through`] adds them to the record with a small example (their first
//! [`MAX_EXAMPLE_CHARS`] characters, never the whole value), so kye reports them as drift
//! exactly as it does for fields a `Value` mapping copies through.
//!
//! ```
//! use kye_runtime::json::JsonDoc;
//! use serde::Deserialize;
//! use serde_json::{json, Map, Value};
//!
//! #[derive(Deserialize)]
//! struct Named { name: String }
//!
//! let doc = JsonDoc::parse(r#"{"id": 25, "name": "pikachu", "order": null,
//!     "species": {"name": "pikachu", "url": "..."}, "moves": [{"move": {"name": "thunder-shock"}}],
//!     "cries": {"latest": "https://..."}}"#)?;
//! let mut out = Map::new();
//! doc.copy_to(&mut out, &["id", "name", "order", "height"])?; // null stays null, absent stays absent
//! if let Some(species) = doc.get::<Named>("species")? {
//!     out.insert("species".into(), species.name.into());
//! }
//! doc.pass_through(&mut out, &["id", "name", "order", "height", "species", "moves"]);
//! assert_eq!(Value::Object(out), json!({
//!     "id": 25, "name": "pikachu", "order": null, "species": "pikachu",
//!     "cries": {"latest": "https://..."},   // unknown: kye records it as drift
//! }));
//! # Ok::<(), kye_runtime::Error>(())
//! ```
//!
//! Errors: a body that is not JSON is classified as by [`Context::get_json`] (cut short:
//! retryable; never parses: permanent); a body whose top level is not an object, and a field
//! that does not have the shape asked for, are permanent errors naming the field.
//!
//! Keys repeated at the top level keep their last value, as in `serde_json`, and are noted
//! like [`Context::get_json_value`] notes them (a warning naming the model, key and field);
//! so are keys repeated inside a field read with [`JsonDoc::value`]. Inside fields read with
//! [`JsonDoc::get`], serde's rules apply (a repeated struct field is an error).
//!
//! [`Context::get_json_doc`]: crate::Context::get_json_doc
//! [`Context::get_json`]: crate::Context::get_json
//! [`Context::get_json_value`]: crate::Context::get_json_value

use std::ops::Range;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::json_dups::DuplicateNotes;

pub use crate::json_dups::{parse_value, DuplicateKey, Duplicates};
pub use kye_lang::validate::MAX_EXAMPLE_CHARS;

/// A JSON object whose top-level fields are located but not parsed.
///
/// Made by [`Context::get_json_doc`](crate::Context::get_json_doc) from a response, or by
/// [`JsonDoc::parse`] from bytes. Reading a field parses only that field's bytes; reading it
/// twice parses it twice.
#[derive(Clone)]
pub struct JsonDoc {
    body: Vec<u8>,
    /// Top-level fields in body order, repeated keys included.
    fields: Vec<Field>,
    /// Where the body came from (credentials redacted), for errors and duplicate notes.
    url: Option<String>,
    notes: Option<Arc<DuplicateNotes>>,
}

impl std::fmt::Debug for JsonDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDoc")
            .field("url", &self.url)
            .field("bytes", &self.body.len())
            .field("keys", &self.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JsonDoc {
    /// Locates the top-level fields of `body`, which must be a JSON object. Every byte is
    /// checked for JSON syntax; no value is built.
    pub fn parse(body: impl Into<Vec<u8>>) -> Result<JsonDoc> {
        JsonDoc::index(body.into(), None, None)
    }

    /// [`JsonDoc::parse`] for a response body fetched from `url` (already redacted), noting
    /// repeated keys into `notes`.
    pub(crate) fn from_response(
        body: Vec<u8>,
        url: String,
        notes: Option<Arc<DuplicateNotes>>,
    ) -> Result<JsonDoc> {
        JsonDoc::index(body, Some(url), notes)
    }

    fn index(
        body: Vec<u8>,
        url: Option<String>,
        notes: Option<Arc<DuplicateNotes>>,
    ) -> Result<JsonDoc> {
        let fields = match top_level_fields(&body) {
            Ok(fields) => fields,
            Err(Scan::NotObject) => {
                let e = Error::permanent(format!(
                    "expected a JSON object, the response is {}",
                    kind_at_start(&body)
                ));
                return Err(with_url(e, url.as_deref()));
            }
            Err(Scan::Invalid) => {
                // serde_json's own error and class for this body (as `get_json` reports it).
                let e = match crate::http::parse_json::<IgnoredAny>(&body) {
                    Err(e) => e,
                    Ok(_) => Error::permanent("the response is not a JSON object"),
                };
                return Err(with_url(e, url.as_deref()));
            }
        };
        let doc = JsonDoc {
            body,
            fields,
            url,
            notes,
        };
        doc.note_repeated_keys();
        Ok(doc)
    }

    /// The whole body as it came.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The top-level keys, in body order, each once.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().filter(|f| !f.repeated).map(|f| &*f.key)
    }

    /// Whether the document has a top-level field `key` (`null` included).
    pub fn contains(&self, key: &str) -> bool {
        self.span(key).is_some()
    }

    /// The JSON text of field `key` as it came (`"null"` for a null), or `None` if absent.
    pub fn raw(&self, key: &str) -> Option<&str> {
        // Located by serde_json, so it is valid JSON; strings inside are checked when parsed.
        self.span(key)
            .and_then(|r| std::str::from_utf8(&self.body[r]).ok())
    }

    /// Field `key` parsed into `T`: `Ok(None)` if the document has no such field. A field that
    /// does not fit `T` is a permanent error naming it. For a field that may be `null`, use
    /// `Option<T>`: `Ok(Some(None))` is a `null`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(range) = self.span(key) else {
            return Ok(None);
        };
        crate::http::parse_json(&self.body[range])
            .map(Some)
            .map_err(|e| self.field_error(key, e))
    }

    /// Field `key` as a [`Value`] (a `null` is `Some(Value::Null)`), or `None` if absent.
    /// Keys repeated inside it are noted like [`Context::get_json_value`]'s.
    ///
    /// [`Context::get_json_value`]: crate::Context::get_json_value
    pub fn value(&self, key: &str) -> Result<Option<Value>> {
        let Some(range) = self.span(key) else {
            return Ok(None);
        };
        let bytes = &self.body[range];
        if !matches!(bytes.first(), Some(b'{' | b'[')) {
            // A scalar repeats nothing: serde_json's own parse.
            return crate::http::parse_json::<Value>(bytes)
                .map(Some)
                .map_err(|e| self.field_error(key, e));
        }
        match crate::json_dups::parse_value_at(bytes, key) {
            Ok((value, duplicates)) => {
                self.note(duplicates);
                Ok(Some(value))
            }
            Err(_) => match crate::http::parse_json::<Value>(bytes) {
                Err(e) => Err(self.field_error(key, e)),
                Ok(v) => Ok(Some(v)),
            },
        }
    }

    /// Copies each of `keys` the document has into `out` under the same name, as it came: a
    /// `null` is copied as `null`, an absent field stays absent. Never a default.
    pub fn copy_to(&self, out: &mut Map<String, Value>, keys: &[&str]) -> Result<()> {
        for key in keys {
            if let Some(v) = self.value(key)? {
                out.insert((*key).to_string(), v);
            }
        }
        Ok(())
    }

    /// The top-level fields not in `known`, each with a small example of its value: the value
    /// itself if its JSON text is at most [`MAX_EXAMPLE_CHARS`] characters, else a string of
    /// its first [`MAX_EXAMPLE_CHARS`] characters (whitespace between tokens removed) and `…`.
    /// A large value is never parsed.
    pub fn unknown_fields<'a>(
        &'a self,
        known: &'a [&str],
    ) -> impl Iterator<Item = (&'a str, Value)> + 'a {
        self.keys()
            .filter(move |k| !known.contains(k))
            .filter_map(move |k| Some((k, example(&self.body[self.span(k)?]))))
    }

    /// Adds every top-level field not in `known` (the fields the mapping reads and those it
    /// leaves out on purpose) to `out` with a small example ([`JsonDoc::unknown_fields`]),
    /// unless `out` already has that key. The validator keeps such fields out of the record
    /// and reports them as drift: how you learn that the source started sending something.
    pub fn pass_through(&self, out: &mut Map<String, Value>, known: &[&str]) {
        for (k, v) in self.unknown_fields(known) {
            if !out.contains_key(k) {
                out.insert(k.to_string(), v);
            }
        }
    }

    /// Byte range of the last field called `key` (the one `serde_json` would keep).
    fn span(&self, key: &str) -> Option<Range<usize>> {
        self.fields
            .iter()
            .find(|f| !f.repeated && &*f.key == key)
            .map(|f| f.value.clone())
    }

    fn field_error(&self, key: &str, e: Error) -> Error {
        let e = e.context(format!("field `{key}`"));
        with_url(e, self.url.as_deref())
    }

    fn note(&self, duplicates: Duplicates) {
        if let (Some(notes), false) = (&self.notes, duplicates.is_empty()) {
            notes.add(self.url.as_deref().unwrap_or(""), duplicates);
        }
    }

    /// Notes top-level keys given twice (the first value dropped, the last kept).
    fn note_repeated_keys(&self) {
        if self.notes.is_none() {
            return;
        }
        let mut d = Duplicates::default();
        for (i, dropped) in self.fields.iter().enumerate().filter(|(_, f)| f.repeated) {
            d.total += 1;
            if d.listed.len() < crate::json_dups::MAX_LISTED {
                // The next field of the same name replaced this one.
                let Some(kept) = self.fields[i + 1..].iter().find(|f| f.key == dropped.key) else {
                    continue;
                };
                d.listed.push(DuplicateKey {
                    path: dropped.key.to_string(),
                    dropped: example(&self.body[dropped.value.clone()]),
                    kept: example(&self.body[kept.value.clone()]),
                });
            }
        }
        self.note(d);
    }
}

/// A top-level field of the body.
#[derive(Clone)]
struct Field {
    /// The key, unescaped.
    key: Box<str>,
    /// Where its value is in the body.
    value: Range<usize>,
    /// A later field has the same key (and replaces this one, as in `serde_json`).
    repeated: bool,
}

fn with_url(e: Error, url: Option<&str>) -> Error {
    match url {
        Some(u) if e.url().is_none() => e.with_url(u),
        _ => e,
    }
}

/// Why a body could not be indexed.
enum Scan {
    /// Valid JSON, but not an object (or the scanner cannot tell: the caller asks serde_json).
    NotObject,
    /// Not valid JSON.
    Invalid,
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = body.get(i) {
        i += 1;
    }
    i
}

/// The top-level fields of `body`: each key (unescaped) and the byte range of its value. Each
/// value is checked and skipped by serde_json ([`IgnoredAny`]), which builds nothing.
fn top_level_fields(body: &[u8]) -> std::result::Result<Vec<Field>, Scan> {
    let mut i = skip_ws(body, 0);
    match body.get(i) {
        Some(b'{') => i += 1,
        Some(_) => {
            // Valid JSON of another kind, or not JSON at all.
            return Err(match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Scan::NotObject,
                Err(_) => Scan::Invalid,
            });
        }
        None => return Err(Scan::Invalid),
    }
    let mut fields = Vec::with_capacity(24);
    i = skip_ws(body, i);
    if body.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            // A key: a JSON string.
            if body.get(i) != Some(&b'"') {
                return Err(Scan::Invalid);
            }
            let start = i;
            let mut j = i + 1;
            let mut escaped = false;
            loop {
                match body.get(j) {
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        j += 2;
                    }
                    Some(b) if *b < 0x20 => return Err(Scan::Invalid),
                    Some(_) => j += 1,
                    None => return Err(Scan::Invalid),
                }
            }
            let key: Box<str> = if escaped {
                serde_json::from_slice::<String>(&body[start..=j])
                    .map_err(|_| Scan::Invalid)?
                    .into()
            } else {
                std::str::from_utf8(&body[start + 1..j])
                    .map_err(|_| Scan::Invalid)?
                    .into()
            };
            i = skip_ws(body, j + 1);
            if body.get(i) != Some(&b':') {
                return Err(Scan::Invalid);
            }
            i = skip_ws(body, i + 1);
            // The value: serde_json skips it and says where it ended.
            let mut values =
                serde_json::Deserializer::from_slice(&body[i..]).into_iter::<IgnoredAny>();
            match values.next() {
                Some(Ok(_)) => {}
                _ => return Err(Scan::Invalid),
            }
            let end = i + values.byte_offset();
            fields.push(Field {
                key,
                value: i..end,
                repeated: false,
            });
            i = skip_ws(body, end);
            match body.get(i) {
                Some(b',') => i = skip_ws(body, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(Scan::Invalid),
            }
        }
    }
    if skip_ws(body, i) != body.len() {
        return Err(Scan::Invalid);
    }
    // Mark every field a later one of the same key replaces: sorted by key, then by position.
    let mut order: Vec<usize> = (0..fields.len()).collect();
    order.sort_by(|a, b| fields[*a].key.cmp(&fields[*b].key).then(a.cmp(b)));
    for pair in order.windows(2) {
        if fields[pair[0]].key == fields[pair[1]].key {
            fields[pair[0]].repeated = true;
        }
    }
    Ok(fields)
}

/// What kind of JSON value starts `body` (`an array`, `a string`, ...).
fn kind_at_start(body: &[u8]) -> &'static str {
    match body.get(skip_ws(body, 0)) {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// An example of a value from its JSON text: the value if short, else the start of its text.
fn example(raw: &[u8]) -> Value {
    if raw.len() <= MAX_EXAMPLE_CHARS {
        if let Ok(v) = serde_json::from_slice::<Value>(raw) {
            return kye_lang_example(v);
        }
    }
    // Long (in bytes): its first MAX_EXAMPLE_CHARS characters, whitespace between tokens
    // dropped, and "…" if there is more. A string's own text is shown without its quotes, as
    // the validator shows long strings.
    let text = String::from_utf8_lossy(raw);
    let (text, is_string) = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => (inner, true),
        None => (&*text, false),
    };
    let mut out = String::with_capacity(MAX_EXAMPLE_CHARS + 3);
    let mut chars = 0;
    let mut in_string = is_string;
    let mut escape = false;
    let mut more = false;
    for c in text.chars() {
        if !in_string && c.is_ascii_whitespace() {
            continue;
        }
        if chars == MAX_EXAMPLE_CHARS {
            more = true;
            break;
        }
        if !is_string {
            if escape {
                escape = false;
            } else if in_string && c == '\\' {
                escape = true;
            } else if c == '"' {
                in_string = !in_string;
            }
        }
        out.push(c);
        chars += 1;
    }
    if more {
        out.push('…');
        Value::String(out)
    } else if is_string {
        // Short in characters after all: the string itself, escapes decoded.
        serde_json::from_slice::<Value>(raw).unwrap_or(Value::String(out))
    } else {
        // Whitespace made it long; the value itself is short.
        serde_json::from_slice::<Value>(raw).map_or(Value::String(out), kye_lang_example)
    }
}

/// The validator's own example of a value (long texts cut the same way).
fn kye_lang_example(v: Value) -> Value {
    match &v {
        Value::Array(_) | Value::Object(_) => {
            let text = v.to_string();
            match text.char_indices().nth(MAX_EXAMPLE_CHARS) {
                None => v,
                Some((i, _)) => Value::String(format!("{}…", &text[..i])),
            }
        }
        Value::String(s) => match s.char_indices().nth(MAX_EXAMPLE_CHARS) {
            None => v,
            Some((i, _)) => Value::String(format!("{}…", &s[..i])),
        },
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_located_and_read_on_demand() {
        let doc = JsonDoc::parse(
            "  {\"id\": 25, \"name\" : \"pika\\\"chu\", \"a\\u0062\": [1, {\"x\": null}],\n \"n\": null, \"f\": -1.5e3 } \n",
        )
        .unwrap();
        assert_eq!(
            doc.keys().collect::<Vec<_>>(),
            ["id", "name", "ab", "n", "f"]
        );
        assert_eq!(doc.get::<u32>("id").unwrap(), Some(25));
        assert_eq!(
            doc.get::<String>("name").unwrap().as_deref(),
            Some("pika\"chu")
        );
        assert_eq!(doc.value("ab").unwrap(), Some(json!([1, {"x": null}])));
        assert_eq!(doc.value("n").unwrap(), Some(Value::Null));
        assert_eq!(doc.get::<Option<u32>>("n").unwrap(), Some(None));
        assert_eq!(doc.value("missing").unwrap(), None);
        assert_eq!(doc.raw("f"), Some("-1.5e3"));
        assert!(doc.contains("n") && !doc.contains("missing"));
        let e = doc.get::<u32>("name").unwrap_err();
        assert_eq!(e.class(), crate::ErrorClass::Permanent);
        assert!(e.to_string().starts_with("field `name`: "), "{e}");
        assert_eq!(JsonDoc::parse("{}").unwrap().keys().count(), 0);
    }

    #[test]
    fn anything_but_a_valid_object_is_refused_like_serde_json() {
        for (body, class) in [
            (&b"[1, 2]"[..], crate::ErrorClass::Permanent),
            (b"\"text\"", crate::ErrorClass::Permanent),
            (b"{\"a\": 1", crate::ErrorClass::Retryable),
            (b"{\"a\": 1,}", crate::ErrorClass::Retryable),
            (b"{\"a\": tru}", crate::ErrorClass::Retryable),
            (b"{\"a\": 1} x", crate::ErrorClass::Retryable),
            (b"{\"a\" 1}", crate::ErrorClass::Retryable),
            (b"{\"a\": [1 2]}", crate::ErrorClass::Retryable),
            (b"", crate::ErrorClass::Retryable),
        ] {
            let e = JsonDoc::parse(body).unwrap_err();
            assert_eq!(e.class(), class, "{}: {e}", String::from_utf8_lossy(body));
            if body.starts_with(b"{") || body.is_empty() {
                // The same message as a plain typed parse of the body.
                let plain = crate::http::parse_json::<IgnoredAny>(body).unwrap_err();
                assert_eq!(e.to_string(), plain.to_string());
            }
        }
        // What serde's IgnoredAny does not look at is checked when the field is read.
        let doc = JsonDoc::parse(b"{\"a\": 1e400, \"s\": \"\\ud800\"}".to_vec()).unwrap();
        assert_eq!(
            doc.value("a").unwrap_err().class(),
            crate::ErrorClass::Permanent
        );
        assert_eq!(
            doc.get::<String>("s").unwrap_err().class(),
            crate::ErrorClass::Permanent
        );
        let e = JsonDoc::parse("[\"electric\"]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected a JSON object, the response is an array"
        );
    }

    #[test]
    fn unknown_fields_come_with_small_examples_never_the_whole_value() {
        let big: Vec<u32> = (0..1000).collect();
        let body = json!({
            "id": 1, "moves": big, "cries": {"latest": "a.ogg"}, "text": "x".repeat(1500),
            "short": [1, 2],
        })
        .to_string();
        let doc = JsonDoc::parse(body).unwrap();
        let unknown: Vec<(&str, Value)> = doc.unknown_fields(&["id"]).collect();
        assert_eq!(unknown[0].0, "cries");
        assert_eq!(unknown[0].1, json!({"latest": "a.ogg"}));
        // A long array: its first MAX_EXAMPLE_CHARS characters, as the validator cuts them.
        let moves = &unknown[1];
        assert_eq!(moves.0, "moves");
        let expected = kye_lang_example(json!(big));
        assert_eq!(moves.1, expected);
        let text = &unknown.iter().find(|(k, _)| *k == "text").unwrap().1;
        assert_eq!(text, &kye_lang_example(json!("x".repeat(1500))));
        assert_eq!(unknown.len(), 4);

        let mut out = Map::new();
        out.insert("short".into(), json!("mine"));
        doc.pass_through(&mut out, &["id", "moves", "text"]);
        assert_eq!(
            Value::Object(out),
            json!({"short": "mine", "cries": {"latest": "a.ogg"}})
        );
    }

    #[test]
    fn pretty_printed_long_values_are_shown_compact() {
        let pretty =
            serde_json::to_string_pretty(&json!({"list": (0..400).collect::<Vec<_>>()})).unwrap();
        let doc = JsonDoc::parse(pretty).unwrap();
        let (_, ex) = doc.unknown_fields(&[]).next().unwrap();
        let compact = kye_lang_example(json!((0..400).collect::<Vec<_>>()));
        assert_eq!(ex, compact);
        // Short once compact: the value itself.
        let pretty =
            serde_json::to_string_pretty(&json!({"o": {"a": [1, 2, 3], "b": "c d"}})).unwrap();
        let padded = pretty.replace('\n', &format!("\n{}", " ".repeat(300)));
        let doc = JsonDoc::parse(padded).unwrap();
        assert_eq!(
            doc.unknown_fields(&[]).next().unwrap().1,
            json!({"a": [1, 2, 3], "b": "c d"})
        );
    }

    #[test]
    fn repeated_keys_keep_the_last_value_and_are_noted() {
        let notes = crate::json_dups::notes();
        let doc = JsonDoc::from_response(
            br#"{"a": 1, "b": {"x": 1, "x": 2}, "a": 3}"#.to_vec(),
            "http://h/p".into(),
            Some(notes.clone()),
        )
        .unwrap();
        assert_eq!(doc.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(doc.get::<u32>("a").unwrap(), Some(3));
        assert_eq!(doc.value("b").unwrap(), Some(json!({"x": 2})));
        let taken = notes.take();
        let paths: Vec<(&str, &str, Value, Value)> = taken
            .iter()
            .flat_map(|(url, d)| {
                d.listed.iter().map(move |k| {
                    (
                        url.as_str(),
                        k.path.as_str(),
                        k.dropped.clone(),
                        k.kept.clone(),
                    )
                })
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("http://h/p", "a", json!(1), json!(3)),
                ("http://h/p", "b.x", json!(1), json!(2)),
            ]
        );
    }

    #[test]
    fn a_key_given_three_times_is_noted_twice_as_json_dups_notes_it() {
        let body = br#"{"a": 1, "a": [2], "b": 0, "a": {"c": 3}}"#;
        let notes = crate::json_dups::notes();
        let doc = JsonDoc::from_response(body.to_vec(), "u".into(), Some(notes.clone())).unwrap();
        assert_eq!(doc.value("a").unwrap(), Some(json!({"c": 3})));
        assert_eq!(doc.keys().collect::<Vec<_>>(), ["b", "a"]);
        let ours: Vec<(String, Value, Value)> = notes
            .take()
            .into_iter()
            .flat_map(|(_, d)| d.listed)
            .map(|k| (k.path, k.dropped, k.kept))
            .collect();
        let (_, theirs) = crate::json_dups::parse_value(body).unwrap();
        let theirs: Vec<(String, Value, Value)> = theirs
            .listed
            .into_iter()
            .map(|k| (k.path, k.dropped, k.kept))
            .collect();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 2);
        // Without a notes book (JsonDoc::parse), the last value is still the one read.
        assert_eq!(
            JsonDoc::parse(&body[..])
                .unwrap()
                .get::<Value>("a")
                .unwrap(),
            Some(json!({"c": 3}))
        );
    }
}
