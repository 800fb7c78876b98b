//! Mapping PokeAPI documents onto the example's models (`pokemon.kye`).
//!
//! The rules (see `docs/writing-fetchers.md`): copy what the source says, a `null` stays
//! `null` and an absent field stays absent, never a default; pick list entries by meaning (the
//! English effect text), not by position; keep the source's order; pass unknown top-level
//! fields through so kye records them as drift. Validation is kye's job, not the mapping's.

use serde_json::{Map, Value};

/// The document as an object, or a permanent error (the API answered something else).
fn object(doc: Value, what: &str) -> kye::Result<Map<String, Value>> {
    match doc {
        Value::Object(map) => Ok(map),
        other => Err(kye::Error::permanent(format!(
            "PokeAPI answered a {what} request with {} instead of an object",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Copies `from[key]` to `out[to]` when the source has it (a `null` is copied as `null`; an
/// absent field stays absent). Never a default.
fn copy(out: &mut Map<String, Value>, to: &str, from: &Map<String, Value>, key: &str) {
    if let Some(v) = from.get(key) {
        out.insert(to.to_string(), v.clone());
    }
}

/// `{"name": "grass", "url": ...}` → `"grass"`; anything else as it came (`null` stays `null`,
/// so kye reports the entry instead of the fetcher hiding it).
fn name_of(v: &Value) -> Value {
    match v.get("name") {
        Some(name) => name.clone(),
        None => v.clone(),
    }
}

/// Each entry's `entry[field].name`, in the API's order; a missing field is kept as `null`.
fn names_in(list: Option<&Value>, field: &str) -> Option<Value> {
    let items = list?.as_array()?;
    Some(Value::Array(
        items
            .iter()
            .map(|e| e.get(field).map(name_of).unwrap_or(Value::Null))
            .collect(),
    ))
}

/// Passes through top-level fields the mapping neither uses nor deliberately drops, so kye
/// sees them, warns and records them as drift (the API started sending something new).
fn pass_through(out: &mut Map<String, Value>, doc: &Map<String, Value>, known: &[&str]) {
    for (k, v) in doc {
        if !known.contains(&k.as_str()) && !out.contains_key(k) {
            out.insert(k.clone(), v.clone());
        }
    }
}

/// Fields of a `/pokemon/` document the mapping uses or drops on purpose.
const POKEMON_FIELDS: &[&str] = &[
    "id",
    "name",
    "height",
    "weight",
    "base_experience",
    "order",
    "is_default",
    "abilities",
    "types",
    "stats",
    "species",
    // Not modelled: large or about other resources.
    "forms",
    "game_indices",
    "held_items",
    "location_area_encounters",
    "moves",
    "past_abilities",
    "past_types",
    "sprites",
];

/// A `/pokemon/{id}/` document → a `Pokemon` record.
pub(crate) fn map_pokemon(doc: Value) -> kye::Result<Value> {
    let doc = object(doc, "pokemon")?;
    let mut out = Map::new();
    for key in [
        "id",
        "name",
        "height",
        "weight",
        "base_experience",
        "order",
        "is_default",
    ] {
        copy(&mut out, key, &doc, key);
    }
    if let Some(species) = doc.get("species") {
        out.insert("species".into(), name_of(species));
    }
    // Types and abilities by name, in slot order as PokeAPI lists them; with --follow kye
    // fetches each once through `type_by_name` / `ability_by_name`.
    if let Some(types) = names_in(doc.get("types"), "type") {
        out.insert("types".into(), types);
    }
    if let Some(abilities) = names_in(doc.get("abilities"), "ability") {
        out.insert("abilities".into(), abilities);
    }
    if let Some(list) = doc.get("abilities").and_then(Value::as_array) {
        let hidden = list
            .iter()
            .filter(|a| a.get("is_hidden") == Some(&Value::Bool(true)))
            .map(|a| a.get("ability").map(name_of).unwrap_or(Value::Null))
            .collect();
        out.insert("hidden_abilities".into(), Value::Array(hidden));
    }
    // `stats: [{base_stat: 45, stat: {name: "special-attack"}}]` → `special_attack: 45`.
    if let Some(stats) = doc.get("stats").and_then(Value::as_array) {
        for s in stats {
            if let Some(stat) = s.pointer("/stat/name").and_then(Value::as_str) {
                let value = s.get("base_stat").cloned().unwrap_or(Value::Null);
                out.insert(stat.replace('-', "_"), value);
            }
        }
    }
    pass_through(&mut out, &doc, POKEMON_FIELDS);
    Ok(Value::Object(out))
}

/// Fields of a `/type/` document the mapping uses or drops on purpose.
const TYPE_FIELDS: &[&str] = &[
    "id",
    "name",
    "generation",
    "move_damage_class",
    "damage_relations",
    // Not modelled.
    "game_indices",
    "moves",
    "names",
    "past_damage_relations",
    "pokemon",
];

/// The six damage relations of a type, each a list of type names.
const RELATIONS: [&str; 6] = [
    "double_damage_from",
    "double_damage_to",
    "half_damage_from",
    "half_damage_to",
    "no_damage_from",
    "no_damage_to",
];

/// A `/type/{name}/` document → a `PokemonType` record.
pub(crate) fn map_type(doc: Value) -> kye::Result<Value> {
    let doc = object(doc, "type")?;
    let mut out = Map::new();
    copy(&mut out, "id", &doc, "id");
    copy(&mut out, "name", &doc, "name");
    if let Some(g) = doc.get("generation") {
        out.insert("generation".into(), name_of(g));
    }
    // `null` for types introduced after generation III: stays null (the edge is optional).
    if let Some(c) = doc.get("move_damage_class") {
        out.insert("move_damage_class".into(), name_of(c));
    }
    if let Some(rel) = doc.get("damage_relations") {
        for r in RELATIONS {
            if let Some(list) = rel.get(r).and_then(Value::as_array) {
                out.insert(r.into(), Value::Array(list.iter().map(name_of).collect()));
            }
        }
    }
    pass_through(&mut out, &doc, TYPE_FIELDS);
    Ok(Value::Object(out))
}

/// Fields of an `/ability/` document the mapping uses or drops on purpose.
const ABILITY_FIELDS: &[&str] = &[
    "id",
    "name",
    "generation",
    "is_main_series",
    "effect_entries",
    // Not modelled.
    "effect_changes",
    "flavor_text_entries",
    "names",
    "pokemon",
];

/// An `/ability/{name}/` document → a `PokemonAbility` record.
pub(crate) fn map_ability(doc: Value) -> kye::Result<Value> {
    let doc = object(doc, "ability")?;
    let mut out = Map::new();
    copy(&mut out, "id", &doc, "id");
    copy(&mut out, "name", &doc, "name");
    copy(&mut out, "is_main_series", &doc, "is_main_series");
    if let Some(g) = doc.get("generation") {
        out.insert("generation".into(), name_of(g));
    }
    // Effect texts come in several languages, not always English first: pick `en` by
    // language. No English entry: the optional edges stay absent.
    let english = doc
        .get("effect_entries")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|e| e.pointer("/language/name").and_then(Value::as_str) == Some("en"))
        });
    if let Some(e) = english {
        copy_from_value(&mut out, "effect", e, "effect");
        copy_from_value(&mut out, "short_effect", e, "short_effect");
    }
    pass_through(&mut out, &doc, ABILITY_FIELDS);
    Ok(Value::Object(out))
}

fn copy_from_value(out: &mut Map<String, Value>, to: &str, from: &Value, key: &str) {
    if let Some(v) = from.get(key) {
        out.insert(to.to_string(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_null_stays_null_and_nothing_is_invented() {
        let doc = json!({
            "id": 93, "name": "haunter", "height": 16, "weight": 1, "base_experience": null,
            "types": [{"slot": 1, "type": {"name": "ghost", "url": "u"}}, {"slot": 2, "type": null}],
            "abilities": [{"ability": {"name": "levitate", "url": "u"}, "is_hidden": false, "slot": 1}],
        });
        let out = map_pokemon(doc).unwrap();
        assert_eq!(out["base_experience"], Value::Null);
        assert_eq!(out["types"], json!(["ghost", null]));
        assert!(out.get("order").is_none(), "absent stays absent");
        assert_eq!(out["hidden_abilities"], json!([]));
    }

    #[test]
    fn stats_become_edges_and_hidden_abilities_are_kept_apart() {
        let doc = json!({
            "id": 25, "name": "pikachu",
            "stats": [{"base_stat": 50, "effort": 0, "stat": {"name": "special-attack", "url": "u"}}],
            "abilities": [
                {"ability": {"name": "static"}, "is_hidden": false, "slot": 1},
                {"ability": {"name": "lightning-rod"}, "is_hidden": true, "slot": 3},
            ],
            "species": {"name": "pikachu", "url": "u"},
            "moves": [{"move": {"name": "thunder-shock"}}],
        });
        let out = map_pokemon(doc).unwrap();
        assert_eq!(out["special_attack"], 50);
        assert_eq!(out["abilities"], json!(["static", "lightning-rod"]));
        assert_eq!(out["hidden_abilities"], json!(["lightning-rod"]));
        assert_eq!(out["species"], "pikachu");
        assert!(out.get("moves").is_none(), "dropped on purpose, not drift");
    }

    #[test]
    fn english_effect_is_picked_by_language() {
        let doc = json!({
            "id": 9, "name": "static", "is_main_series": true,
            "generation": {"name": "generation-iii", "url": "u"},
            "effect_entries": [
                {"effect": "Lähmt", "short_effect": "Lähmt", "language": {"name": "de"}},
                {"effect": "Paralyzes", "short_effect": "Paralyzes.", "language": {"name": "en"}},
            ],
        });
        let out = map_ability(doc).unwrap();
        assert_eq!(out["effect"], "Paralyzes");
        assert_eq!(out["generation"], "generation-iii");
        // The mapped record has the generated type's shape.
        let typed: crate::PokemonAbility = serde_json::from_value(out).unwrap();
        assert_eq!(typed.name, "static");
    }

    #[test]
    fn unknown_fields_pass_through_for_drift() {
        let out =
            map_type(json!({"id": 13, "name": "electric", "sprites": {}, "moves": []})).unwrap();
        assert!(out.get("sprites").is_some());
        assert!(out.get("moves").is_none());
    }

    #[test]
    fn a_document_that_is_not_an_object_is_a_permanent_error() {
        let e = map_type(json!(["electric"])).unwrap_err();
        assert_eq!(e.class(), kye::ErrorClass::Permanent);
        assert!(e.to_string().contains("an array"), "{e}");
    }
}
