//! Many PokeAPI-shaped Pokémon documents from a few fixtures, for load tests and benchmarks.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::fixtures::Fixtures;
use super::route::{Route, Routes, BASE_PLACEHOLDER};

/// Serves `/pokemon/1/` to `/pokemon/{count}/` (and each by name), plus every fixture route.
///
/// Ids that have a fixture are served from it (by id and by its real name only). Every
/// other id is made on request from one of the fixture Pokémon (chosen by id, skipping
/// templates whose `base_experience` is `null`): same types and abilities, so references
/// resolve to the fixtures' type and ability documents, with `id`, `name` (`<template>-<id>`,
/// e.g. `pikachu-1234`), `order`, `species`, `forms` and sprite URLs rewritten, no drift
/// field, and `moves` padded with PokeAPI-shaped entries until the document as served is
/// about `doc_bytes` long (within one move entry, ~1.3 KB; real PokeAPI documents run to
/// hundreds of KB, mostly moves). Documents are deterministic per id and nothing is stored
/// per id, so `count` can be in the millions. The `/pokemon/` list still names only the
/// fixtures.
///
/// Returns `None` if the fixtures hold no usable `/pokemon/` template.
///
/// ```no_run
/// use kye_runtime::testing::{pokeapi, Fixtures, TestServer};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let fixtures = Fixtures::from_dir("examples/pokemon/fixtures")?;
/// let routes = pokeapi::synthetic_pokemon(&fixtures, 10_000, 30_000).expect("templates");
/// let server = TestServer::start(routes).await?;
/// // GET {base}/pokemon/5000/ -> a ~30 KB document named e.g. "charmander-5000".
/// # Ok(())
/// # }
/// ```
pub fn synthetic_pokemon(fixtures: &Fixtures, count: u32, doc_bytes: usize) -> Option<Routes> {
    let templates: Vec<Value> = fixtures
        .paths()
        .filter(|p| p.starts_with("/pokemon/") && p.len() > "/pokemon/".len())
        .filter_map(|p| {
            // By-id routes only, so each template is taken once.
            let id = p["/pokemon/".len()..p.len() - 1].parse::<u32>().ok()?;
            let doc: Value = serde_json::from_str(fixtures.get(p)?).ok()?;
            (doc["id"] == id && !doc["base_experience"].is_null() && doc["name"].is_string())
                .then_some(doc)
        })
        .collect();
    if templates.is_empty() {
        return None;
    }
    let fixture_ids: HashSet<u32> = fixtures
        .paths()
        .filter_map(|p| p.strip_prefix("/pokemon/")?.strip_suffix('/')?.parse().ok())
        .collect();
    let templates = Arc::new(templates);
    let routes = fixtures.routes();
    Some(routes.generate("/pokemon/", move |rest| {
        let segment = rest.strip_suffix('/').unwrap_or(rest);
        // By id (`5000`) or by the generated name (`charmander-5000`).
        let (id, by_name) = match segment.parse::<u32>() {
            Ok(id) => (id, None),
            Err(_) => {
                let (_, id) = segment.rsplit_once('-')?;
                (id.parse::<u32>().ok()?, Some(segment))
            }
        };
        if id == 0 || id > count || fixture_ids.contains(&id) {
            return None;
        }
        let doc = synthesize(&templates, id, doc_bytes);
        if by_name.is_some_and(|name| doc["name"] != name) {
            return None;
        }
        Some(Route::json(doc.to_string()))
    }))
}

/// The document for `id`, built from a template chosen by `id`.
fn synthesize(templates: &[Value], id: u32, doc_bytes: usize) -> Value {
    let template = &templates[id as usize % templates.len()];
    let mut doc = template.clone();
    let base_name = template["name"].as_str().unwrap_or("pokemon");
    let name = format!("{base_name}-{id}");
    doc["id"] = json!(id);
    doc["name"] = json!(name);
    doc["order"] = json!(id);
    doc["species"] = json!({"name": name, "url": format!("{{base}}/pokemon-species/{id}/")});
    doc["forms"] = json!([{"name": name, "url": format!("{{base}}/pokemon-form/{id}/")}]);
    doc["location_area_encounters"] = json!(format!("{{base}}/pokemon/{id}/encounters"));
    doc["game_indices"] = json!([]);
    doc["sprites"] = json!({
        "back_default": format!("{{base}}/media/sprites/pokemon/back/{id}.png"),
        "back_female": null,
        "back_shiny": format!("{{base}}/media/sprites/pokemon/back/shiny/{id}.png"),
        "back_shiny_female": null,
        "front_default": format!("{{base}}/media/sprites/pokemon/{id}.png"),
        "front_female": null,
        "front_shiny": format!("{{base}}/media/sprites/pokemon/shiny/{id}.png"),
        "front_shiny_female": null,
    });
    if let Some(obj) = doc.as_object_mut() {
        // Drift belongs to the one fixture that carries it, not to thousands of copies.
        obj.remove("cries");
    }

    let mut size = served_len(&doc);
    let mut moves = doc["moves"].as_array().cloned().unwrap_or_default();
    let mut k: u32 = 0;
    while size < doc_bytes {
        let entry = padding_move(id, k);
        size += served_len(&entry) + 1;
        moves.push(entry);
        k += 1;
    }
    doc["moves"] = Value::Array(moves);
    doc
}

/// Length of `value` as served: `{base}` becomes `http://127.0.0.1:PORT` (up to 22 bytes).
fn served_len(value: &Value) -> usize {
    let text = value.to_string();
    let bases = text.matches(BASE_PLACEHOLDER).count();
    text.len() + bases * ("http://127.0.0.1:65535".len() - BASE_PLACEHOLDER.len())
}

const VERSION_GROUPS: [(&str, u32); 6] = [
    ("red-blue", 1),
    ("yellow", 2),
    ("gold-silver", 3),
    ("crystal", 4),
    ("ruby-sapphire", 5),
    ("emerald", 6),
];

/// A move entry shaped like PokeAPI's, deterministic in (`id`, `k`).
fn padding_move(id: u32, k: u32) -> Value {
    let move_id = 1 + (id.wrapping_mul(31).wrapping_add(k.wrapping_mul(7))) % 900;
    let details: Vec<Value> = VERSION_GROUPS
        .iter()
        .map(|(group, group_id)| {
            json!({
                "level_learned_at": (move_id + group_id) % 60,
                "move_learn_method": {"name": "level-up", "url": "{base}/move-learn-method/1/"},
                "order": null,
                "version_group": {"name": group, "url": format!("{{base}}/version-group/{group_id}/")},
            })
        })
        .collect();
    json!({
        "move": {"name": format!("move-{move_id}"), "url": format!("{{base}}/move/{move_id}/")},
        "version_group_details": details,
    })
}
