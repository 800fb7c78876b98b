//! Mapping PokeAPI documents onto the example's models (`pokemon.kye`).
//!
//! The rules (see `docs/writing-fetchers.md`): copy what the source says, a `null` stays
//! `null` and an absent field stays absent, never a default; pick list entries by meaning (the
//! English effect text), not by position; keep the source's order; pass unknown top-level
//! fields through so kye records them as drift. Validation is kye's job, not the mapping's.
//!
//! Documents come as [`JsonDoc`]s (`ctx.get_json_doc`): only the fields mapped here are parsed;
//! the rest (a real Pokémon is 20–600 KB, mostly `moves` and `sprites`) is skipped, never built.

use kye::json::JsonDoc;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `{"name": "grass", "url": ...}` → `"grass"`; anything else as it came (`null` stays `null`,
/// so kye reports the entry instead of the fetcher hiding it).
pub(crate) fn name_of(v: &Value) -> Value {
    match v.get("name") {
        Some(name) => name.clone(),
        None => v.clone(),
    }
}

/// Fields of a `/pokemon/` document the mapping uses or drops on purpose; the first
/// [`POKEMON_COPIED`] are copied as they are.
pub(crate) const POKEMON_FIELDS: &[&str] = &[
    // Copied as they are.
    "id",
    "name",
    "height",
    "weight",
    "base_experience",
    "order",
    "is_default",
    // Mapped.
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

/// How many of [`POKEMON_FIELDS`] are copied as they are (`id` to `is_default`).
pub(crate) const POKEMON_COPIED: usize = 7;

/// `{"name": "grass", "url": ...}`: only the name is read (a `null` name stays `null`).
#[derive(Deserialize)]
struct Named {
    name: Value,
}

/// The name of a reference that may be `null` (or missing): `null` then.
fn name(named: Option<Named>) -> Value {
    named.map_or(Value::Null, |n| n.name)
}

/// An entry of a Pokémon's `types`: `{"slot": 1, "type": {"name": "grass", "url": ...}}`.
#[derive(Deserialize)]
struct TypeSlot {
    #[serde(rename = "type")]
    ty: Option<Named>,
}

/// An entry of a Pokémon's `abilities`.
#[derive(Deserialize)]
struct AbilitySlot {
    ability: Option<Named>,
    #[serde(default)]
    is_hidden: Value,
}

/// An entry of a Pokémon's `stats`: `{"base_stat": 45, "effort": 0, "stat": {"name": "hp"}}`.
#[derive(Deserialize)]
struct Stat {
    #[serde(default)]
    base_stat: Value,
    stat: Option<Named>,
}

/// A `/pokemon/{id}/` document → a `Pokemon` record. Reads the few small fields it maps, the
/// lists into small typed structs; `moves` and `sprites` (most of the 20–600 KB) are skipped,
/// never built.
pub(crate) fn map_pokemon(doc: &JsonDoc) -> kye::Result<Value> {
    let mut out = Map::new();
    doc.copy_to(&mut out, &POKEMON_FIELDS[..POKEMON_COPIED])?;
    if let Some(species) = doc.get::<Option<Named>>("species")? {
        out.insert("species".into(), name(species));
    }
    // Types and abilities by name, in slot order as PokeAPI lists them; with --follow kye
    // fetches each once through `type_by_name` / `ability_by_name`. A `null` entry stays
    // `null`, so kye reports it instead of the fetcher hiding it.
    if let Some(types) = doc.get::<Option<Vec<TypeSlot>>>("types")?.flatten() {
        let names = types.into_iter().map(|t| name(t.ty)).collect();
        out.insert("types".into(), Value::Array(names));
    }
    if let Some(abilities) = doc.get::<Option<Vec<AbilitySlot>>>("abilities")?.flatten() {
        let mut names = Vec::with_capacity(abilities.len());
        let mut hidden = Vec::new();
        for a in abilities {
            let n = name(a.ability);
            if a.is_hidden == Value::Bool(true) {
                hidden.push(n.clone());
            }
            names.push(n);
        }
        out.insert("abilities".into(), Value::Array(names));
        out.insert("hidden_abilities".into(), Value::Array(hidden));
    }
    // `stats: [{base_stat: 45, stat: {name: "special-attack"}}]` → `special_attack: 45`.
    for s in doc
        .get::<Option<Vec<Stat>>>("stats")?
        .flatten()
        .unwrap_or_default()
    {
        if let Some(Value::String(stat)) = s.stat.map(|n| n.name) {
            out.insert(stat.replace('-', "_"), s.base_stat);
        }
    }
    doc.pass_through(&mut out, POKEMON_FIELDS);
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
pub(crate) fn map_type(doc: &JsonDoc) -> kye::Result<Value> {
    let mut out = Map::new();
    doc.copy_to(&mut out, &["id", "name"])?;
    if let Some(g) = doc.value("generation")? {
        out.insert("generation".into(), name_of(&g));
    }
    // `null` for types introduced after generation III: stays null (the edge is optional).
    if let Some(c) = doc.value("move_damage_class")? {
        out.insert("move_damage_class".into(), name_of(&c));
    }
    if let Some(rel) = doc.value("damage_relations")? {
        for r in RELATIONS {
            if let Some(list) = rel.get(r).and_then(Value::as_array) {
                out.insert(r.into(), Value::Array(list.iter().map(name_of).collect()));
            }
        }
    }
    doc.pass_through(&mut out, TYPE_FIELDS);
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
pub(crate) fn map_ability(doc: &JsonDoc) -> kye::Result<Value> {
    let mut out = Map::new();
    doc.copy_to(&mut out, &["id", "name", "is_main_series"])?;
    if let Some(g) = doc.value("generation")? {
        out.insert("generation".into(), name_of(&g));
    }
    // Effect texts come in several languages, not always English first: pick `en` by
    // language. No English entry: the optional edges stay absent.
    let entries = doc.value("effect_entries")?;
    let english = entries.as_ref().and_then(Value::as_array).and_then(|list| {
        list.iter()
            .find(|e| e.pointer("/language/name").and_then(Value::as_str) == Some("en"))
    });
    if let Some(e) = english {
        for key in ["effect", "short_effect"] {
            if let Some(v) = e.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    doc.pass_through(&mut out, ABILITY_FIELDS);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The document as a fetcher gets it from `ctx.get_json_doc`.
    fn doc(v: Value) -> JsonDoc {
        JsonDoc::parse(v.to_string()).unwrap()
    }

    #[test]
    fn a_null_stays_null_and_nothing_is_invented() {
        let body = json!({
            "id": 93, "name": "haunter", "height": 16, "weight": 1, "base_experience": null,
            "types": [{"slot": 1, "type": {"name": "ghost", "url": "u"}}, {"slot": 2, "type": null}],
            "abilities": [{"ability": {"name": "levitate", "url": "u"}, "is_hidden": false, "slot": 1}],
        });
        let out = map_pokemon(&doc(body)).unwrap();
        assert_eq!(out["base_experience"], Value::Null);
        assert_eq!(out["types"], json!(["ghost", null]));
        assert!(out.get("order").is_none(), "absent stays absent");
        assert_eq!(out["hidden_abilities"], json!([]));
    }

    #[test]
    fn stats_become_edges_and_hidden_abilities_are_kept_apart() {
        let body = json!({
            "id": 25, "name": "pikachu",
            "stats": [{"base_stat": 50, "effort": 0, "stat": {"name": "special-attack", "url": "u"}}],
            "abilities": [
                {"ability": {"name": "static"}, "is_hidden": false, "slot": 1},
                {"ability": {"name": "lightning-rod"}, "is_hidden": true, "slot": 3},
            ],
            "species": {"name": "pikachu", "url": "u"},
            "moves": [{"move": {"name": "thunder-shock"}}],
        });
        let out = map_pokemon(&doc(body)).unwrap();
        assert_eq!(out["special_attack"], 50);
        assert_eq!(out["abilities"], json!(["static", "lightning-rod"]));
        assert_eq!(out["hidden_abilities"], json!(["lightning-rod"]));
        assert_eq!(out["species"], "pikachu");
        assert!(out.get("moves").is_none(), "dropped on purpose, not drift");
    }

    #[test]
    fn english_effect_is_picked_by_language() {
        let body = json!({
            "id": 9, "name": "static", "is_main_series": true,
            "generation": {"name": "generation-iii", "url": "u"},
            "effect_entries": [
                {"effect": "Lähmt", "short_effect": "Lähmt", "language": {"name": "de"}},
                {"effect": "Paralyzes", "short_effect": "Paralyzes.", "language": {"name": "en"}},
            ],
        });
        let out = map_ability(&doc(body)).unwrap();
        assert_eq!(out["effect"], "Paralyzes");
        assert_eq!(out["generation"], "generation-iii");
        // The mapped record has the generated type's shape.
        let typed: crate::PokemonAbility = serde_json::from_value(out).unwrap();
        assert_eq!(typed.name, "static");
    }

    #[test]
    fn unknown_fields_pass_through_for_drift() {
        let out = map_type(&doc(
            json!({"id": 13, "name": "electric", "sprites": {"a": "b"}, "moves": [1]}),
        ))
        .unwrap();
        assert_eq!(out["sprites"], json!({"a": "b"}));
        assert!(out.get("moves").is_none());
    }
}
