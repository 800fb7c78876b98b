//! `kye-bench parse`: the ways a fetcher can turn a PokeAPI Pokémon document into the
//! `Pokemon` record, measured on the same documents in one process, rounds interleaved.
//!
//! The options issue 19 asked to compare before choosing kye's fast path:
//! - `skip`: `serde_json` skipping the whole document (`IgnoredAny`): what any parser pays.
//! - `typed`: serde into a struct of the mapped fields, the rest skipped (`IgnoredAny`),
//!   then mapped: the bench's own fetcher, and the `floor + parse` side of the fetch benchmark.
//!   Unknown fields are lost (no drift).
//! - `typed+unknown`: the same, through a deserializer that also hands back the names of the
//!   top-level fields the struct does not know, so they can be reported as drift. A prototype
//!   of that option, here only: names without examples, its lowest possible cost.
//! - `doc`: kye's [`JsonDoc`] (`ctx.get_json_doc`): top-level fields located in one pass,
//!   only the mapped ones parsed, unknown ones passed through with a small example; mapped by
//!   the Pokémon example's own `mapping.rs`.
//! - `value`: the whole document into a `serde_json::Value` (`serde_json::from_slice`), mapped
//!   from the `Value` with unknown fields copied through.
//! - `value+dups`: the same through `kye::json::parse_value`, which also finds
//!   repeated keys: what `ctx.get_json_value` does.
//!
//! ```text
//! kye-bench parse [--docs M] [--rounds R] [--size real|BYTES] [--only WAY]   # WAY: skip, typed, typed-unknown, doc, value, value-dups
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Instant;

use kye::json::JsonDoc;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};
use serde_json::{Map, Value};

use super::synthetic::{Sizes, Synthetic};
use super::{map_pokemon, mapping, workspace_root, AnyResult, ApiPokemon};

/// Fields of a `/pokemon/` document the mappings read or leave out on purpose (the example's).
const KNOWN: &[&str] = mapping::POKEMON_FIELDS;

/// The `Value` way: the whole document built as a `Value`, then mapped from it, unknown fields
/// copied through (what the example did before `JsonDoc`).
fn map_value(doc: Value) -> Value {
    let Value::Object(doc) = doc else {
        return Value::Null;
    };
    let names = |list: Option<&Value>, field: &str| -> Option<Value> {
        Some(Value::Array(
            list?
                .as_array()?
                .iter()
                .map(|e| e.get(field).map(mapping::name_of).unwrap_or(Value::Null))
                .collect(),
        ))
    };
    let mut out = Map::new();
    for key in &KNOWN[..mapping::POKEMON_COPIED] {
        if let Some(v) = doc.get(*key) {
            out.insert((*key).into(), v.clone());
        }
    }
    if let Some(s) = doc.get("species") {
        out.insert("species".into(), mapping::name_of(s));
    }
    if let Some(t) = names(doc.get("types"), "type") {
        out.insert("types".into(), t);
    }
    if let Some(a) = names(doc.get("abilities"), "ability") {
        out.insert("abilities".into(), a);
    }
    if let Some(list) = doc.get("abilities").and_then(Value::as_array) {
        let hidden = list
            .iter()
            .filter(|a| a.get("is_hidden") == Some(&Value::Bool(true)))
            .map(|a| {
                a.get("ability")
                    .map(mapping::name_of)
                    .unwrap_or(Value::Null)
            })
            .collect();
        out.insert("hidden_abilities".into(), Value::Array(hidden));
    }
    if let Some(stats) = doc.get("stats").and_then(Value::as_array) {
        for s in stats {
            if let Some(stat) = s.pointer("/stat/name").and_then(Value::as_str) {
                let value = s.get("base_stat").cloned().unwrap_or(Value::Null);
                out.insert(stat.replace('-', "_"), value);
            }
        }
    }
    for (k, v) in &doc {
        if !KNOWN.contains(&k.as_str()) && !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// The `typed+unknown` prototype: the struct's own field list (`deserialize_struct`'s `fields`)
// tells known from unknown top-level keys; an unknown key's value is captured as a small
// example instead of being skipped, and the struct's visitor gets a unit in its place.

/// `T` from `body`, plus the top-level fields `T` does not know, each with an example.
fn typed_with_unknown<T: de::DeserializeOwned>(
    body: &[u8],
) -> serde_json::Result<(T, Vec<(String, Value)>)> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut unknown = Vec::new();
    let value = T::deserialize(Tracking {
        de: &mut de,
        unknown: &mut unknown,
    })?;
    de.end()?;
    Ok((value, unknown))
}

struct Tracking<'a, 'de> {
    de: &'a mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
    unknown: &'a mut Vec<(String, Value)>,
}

impl<'de> Deserializer<'de> for Tracking<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
        self.de.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.de.deserialize_map(TrackVisitor {
            inner: visitor,
            fields,
            unknown: self.unknown,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

struct TrackVisitor<'a, V> {
    inner: V,
    fields: &'static [&'static str],
    unknown: &'a mut Vec<(String, Value)>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TrackVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(TrackMap {
            map,
            fields: self.fields,
            unknown: self.unknown,
            pending: None,
        })
    }
}

struct TrackMap<'a, A> {
    map: A,
    fields: &'static [&'static str],
    unknown: &'a mut Vec<(String, Value)>,
    pending: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TrackMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.map.next_key::<Cow<'de, str>>()? else {
            return Ok(None);
        };
        if !self.fields.contains(&&*key) {
            self.pending = Some(key.to_string());
        }
        let key: de::value::StrDeserializer<'_, A::Error> = key.as_ref().into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        match self.pending.take() {
            None => self.map.next_value_seed(seed),
            Some(key) => {
                // The name only, the value skipped: the least this option can cost (an
                // example without building the value needs the raw text, as `JsonDoc` has).
                self.map.next_value::<IgnoredAny>()?;
                self.unknown.push((key, Value::Null));
                seed.deserialize(().into_deserializer())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    Skip,
    Typed,
    TypedUnknown,
    Doc,
    Value,
    ValueDups,
}

const WAYS: [Way; 6] = [
    Way::Skip,
    Way::Typed,
    Way::TypedUnknown,
    Way::Doc,
    Way::Value,
    Way::ValueDups,
];

impl Way {
    /// The name `--only` takes.
    fn short(self) -> &'static str {
        match self {
            Way::Skip => "skip",
            Way::Typed => "typed",
            Way::TypedUnknown => "typed-unknown",
            Way::Doc => "doc",
            Way::Value => "value",
            Way::ValueDups => "value-dups",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Way::Skip => "skip (IgnoredAny, nothing mapped)",
            Way::Typed => "typed + IgnoredAny (no drift)",
            Way::TypedUnknown => "typed + names of unknown fields handed back",
            Way::Doc => "JsonDoc (get_json_doc) + example mapping",
            Way::Value => "Value (serde_json) + mapping",
            Way::ValueDups => "Value with duplicate keys (get_json_value) + mapping",
        }
    }

    /// Maps one document; returns the number of top-level fields of the record (checked).
    fn run(self, body: Vec<u8>) -> AnyResult<usize> {
        Ok(match self {
            Way::Skip => {
                serde_json::from_slice::<IgnoredAny>(&body)?;
                0
            }
            Way::Typed => {
                let p: ApiPokemon = serde_json::from_slice(&body)?;
                fields(&map_pokemon(p))
            }
            Way::TypedUnknown => {
                let (p, unknown): (ApiPokemon, _) = typed_with_unknown(&body)?;
                let mut v = map_pokemon(p);
                if let Value::Object(out) = &mut v {
                    out.extend(
                        unknown
                            .into_iter()
                            .filter(|(k, _)| !KNOWN.contains(&k.as_str())),
                    );
                }
                fields(&v)
            }
            Way::Doc => {
                let doc = JsonDoc::parse(body)?;
                fields(&mapping::map_pokemon(&doc)?)
            }
            Way::Value => fields(&map_value(serde_json::from_slice(&body)?)),
            Way::ValueDups => {
                let (v, _) = kye::json::parse_value(&body)?;
                fields(&map_value(v))
            }
        })
    }
}

fn fields(v: &Value) -> usize {
    std::hint::black_box(v).as_object().map_or(0, Map::len)
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The load average line of `/proc/loadavg` (what `uptime` shows).
pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn parse(args: &[String]) -> AnyResult<()> {
    let mut docs = 64u32;
    let mut rounds = 15usize;
    let mut sizes = Sizes::Real;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--docs" => docs = value()?.parse()?,
            "--rounds" => rounds = value()?.parse()?,
            "--only" => only = Some(value()?.to_string()),
            "--size" => {
                sizes = match value()?.as_str() {
                    "real" => Sizes::Real,
                    n => Sizes::About(n.parse()?),
                }
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let fixtures =
        kye::testing::Fixtures::from_dir(workspace_root().join("examples/pokemon/fixtures"))?;
    let synthetic = Synthetic::new(&fixtures, sizes).ok_or("no Pokémon template")?;
    let bodies: Vec<Vec<u8>> = (1..=docs)
        .map(|id| {
            synthetic
                .document(id)
                .replace("{base}", "http://127.0.0.1:40000")
                .into_bytes()
        })
        .collect();
    let total: usize = bodies.iter().map(Vec::len).sum();
    let mean_kb = total as f64 / bodies.len().max(1) as f64 / 1000.0;
    // Each way must produce the same record size (the unknown field of pikachu included
    // except for `typed` and `skip`), or the comparison is off.
    let mut expect = Vec::new();
    for way in WAYS {
        expect.push(
            bodies
                .iter()
                .map(|b| way.run(b.clone()))
                .sum::<AnyResult<usize>>()?,
        );
    }
    // Enough passes over the documents that a round of the fastest way takes ~100 ms: the
    // kernel may count a thread's CPU time in scheduler ticks (4 ms here).
    let passes = (96_000_000 / total.max(1)).max(1);
    let load_before = load();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); WAYS.len()];
    for round in 0..rounds {
        for k in 0..WAYS.len() {
            // Rotate the order each round so drift on the machine hits every way alike.
            let w = (k + round) % WAYS.len();
            if only.as_deref().is_some_and(|o| o != WAYS[w].short()) {
                continue;
            }
            // Each way consumes its bodies (as a fetcher does a response's): copies made
            // before the clock starts.
            let copies: Vec<Vec<u8>> = (0..passes).flat_map(|_| bodies.iter().cloned()).collect();
            let start = Instant::now();
            let cpu_start = thread_cpu_ns();
            let mut n = 0;
            for body in copies {
                n += WAYS[w].run(body)?;
            }
            // On-CPU time of this thread where the kernel reports it (other processes on the
            // machine then only slow it through caches), else wall time.
            let spent = match (cpu_start, thread_cpu_ns()) {
                (Some(a), Some(b)) => (b - a) as f64,
                _ => start.elapsed().as_nanos() as f64,
            };
            let ns = spent / (bodies.len() * passes) as f64;
            if n != expect[w] * passes {
                return Err(format!("{} mapped differently between rounds", WAYS[w].name()).into());
            }
            samples[w].push(ns);
        }
    }
    let mut out = String::new();
    writeln!(
        out,
        "{} documents, mean {mean_kb:.1} KB, {rounds} interleaved rounds of {passes} passes over them, one thread, {}; load {load_before} before, {} after",
        bodies.len(),
        if thread_cpu_ns().is_some() { "on-CPU time of the thread" } else { "wall time" },
        load()
    )?;
    writeln!(
        out,
        "\n| way | median CPU µs/doc | min CPU µs/doc | MB/s (median) | × typed |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    let typed = super::run::median(samples[1].clone());
    let typed = if typed.is_nan() { 1.0 } else { typed };
    for (w, way) in WAYS.iter().enumerate() {
        if samples[w].is_empty() {
            continue;
        }
        let med = super::run::median(samples[w].clone());
        let min = samples[w].iter().copied().fold(f64::INFINITY, f64::min);
        writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.0} | {:.2} |",
            way.name(),
            med / 1000.0,
            min / 1000.0,
            mean_kb * 1000.0 / (med / 1000.0),
            med / typed
        )?;
    }
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_with_unknown_hands_back_only_unknown_fields() {
        let body = br#"{"id": 1, "name": "a", "types": [], "abilities": [], "stats": [],
            "moves": [1, 2], "cries": {"latest": "x"}}"#;
        let (p, unknown): (ApiPokemon, _) = typed_with_unknown(body).unwrap();
        assert_eq!(p.id, 1);
        let names: Vec<&str> = unknown.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["moves", "cries"]);
        assert!(unknown.iter().all(|(_, v)| v.is_null()));
    }

    #[test]
    fn every_way_maps_the_same_documents() {
        let fixtures =
            kye::testing::Fixtures::from_dir(workspace_root().join("examples/pokemon/fixtures"))
                .unwrap();
        let synthetic = Synthetic::new(&fixtures, Sizes::About(30_000)).unwrap();
        for id in [24, 25, 26] {
            let body = synthetic.document(id).into_bytes();
            let value = Way::Value.run(body.clone()).unwrap();
            assert_eq!(Way::ValueDups.run(body.clone()).unwrap(), value);
            assert_eq!(Way::Doc.run(body.clone()).unwrap(), value);
            assert_eq!(Way::TypedUnknown.run(body.clone()).unwrap(), value);
            // pikachu's `cries` is the one field `typed` loses.
            let typed = Way::Typed.run(body).unwrap();
            assert_eq!(typed + usize::from(id == 25), value, "{id}");
        }
    }
}
