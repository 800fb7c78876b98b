//! Many PokeAPI-shaped Pokémon documents from the example's few fixtures, for load tests and
//! the benchmarks (`bench/`), at PokeAPI's real sizes or at a chosen size.
//!
//! Real PokeAPI documents cannot be fetched here, so they are made: every document is a
//! deterministic function of its id and the fixtures (no randomness that is not seeded by the
//! id, nothing stored per id), with PokeAPI's shape and, with [`Sizes::Real`], its size:
//! served compact, PokeAPI's first 151 Pokémon average about 246 KB (Pikachu 263 KB, of which
//! `moves` is 238 KB and `sprites` 17 KB) and the largest exceed 500 KB.
//!
//! Not part of the example binary: `bench/` and the root package's tests include this file
//! with `#[path]`, each using a part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use kye::testing::{Fixtures, Route, Routes, BASE_PLACEHOLDER};
use serde_json::{json, Map, Value};

/// How large the documents are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizes {
    /// PokeAPI's real sizes and shape: the full `sprites` tree (every generation's game
    /// sprites), about 20 `game_indices`, `held_items` with version details, and `moves`
    /// with one to 27 `version_group_details` each, until the document reaches its size:
    /// between 20 KB and 600 KB, mean about 250 KB, drawn per id ([`real_size`]).
    Real,
    /// About this many bytes each (within one move entry, ~1.3 KB): the compact shape of the
    /// earlier load tests (eight sprite URLs, no game indices) padded with moves.
    About(usize),
}

/// The size a document has with [`Sizes::Real`], in bytes as served: 20 KB plus up to
/// 580 KB, skewed so the mean is 250 KB (`20 000 + 580 000 · u^1.52`, `u` uniform in [0, 1)
/// from the id).
pub fn real_size(id: u32) -> usize {
    let u = (mix(u64::from(id) ^ 0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
    // E[u^a] = 1 / (a + 1); a = 580 / 230 - 1 puts the mean at 250 KB.
    20_000 + (580_000.0 * u.powf(580.0 / 230.0 - 1.0)) as usize
}

/// Pokémon documents made from the `/pokemon/` fixtures.
pub struct Synthetic {
    /// By-id fixture Pokémon usable as templates (`base_experience` not null), by id.
    templates: Vec<Value>,
    /// Every by-id fixture Pokémon, by id.
    fixtures: HashMap<u32, Value>,
    sizes: Sizes,
}

impl Synthetic {
    /// From the fixtures' `/pokemon/{id}/` documents; `None` if they hold no usable template.
    pub fn new(fixtures: &Fixtures, sizes: Sizes) -> Option<Synthetic> {
        let mut by_id: Vec<(u32, Value)> = fixtures
            .paths()
            .filter_map(|p| {
                let id = p
                    .strip_prefix("/pokemon/")?
                    .strip_suffix('/')?
                    .parse::<u32>()
                    .ok()?;
                let doc: Value = serde_json::from_str(fixtures.get(p)?).ok()?;
                (doc["id"] == id && doc["name"].is_string()).then_some((id, doc))
            })
            .collect();
        by_id.sort_by_key(|(id, _)| *id);
        let templates: Vec<Value> = by_id
            .iter()
            .filter(|(_, d)| !d["base_experience"].is_null())
            .map(|(_, d)| d.clone())
            .collect();
        if templates.is_empty() {
            return None;
        }
        Some(Synthetic {
            templates,
            fixtures: by_id.into_iter().collect(),
            sizes,
        })
    }

    /// Whether `id` is one of the fixtures' own Pokémon.
    pub fn is_fixture(&self, id: u32) -> bool {
        self.fixtures.contains_key(&id)
    }

    /// The name the document for `id` carries: a fixture's own (`pikachu`), else
    /// `<template>-<id>` (`charmander-5000`).
    pub fn name(&self, id: u32) -> String {
        match self.fixtures.get(&id) {
            Some(doc) => doc["name"].as_str().unwrap_or_default().to_string(),
            None => format!(
                "{}-{id}",
                self.template(id)["name"].as_str().unwrap_or("pokemon")
            ),
        }
    }

    fn template(&self, id: u32) -> &Value {
        &self.templates[id as usize % self.templates.len()]
    }

    /// The size the document for `id` aims at, in bytes as served.
    pub fn target_size(&self, id: u32) -> usize {
        match self.sizes {
            Sizes::Real => real_size(id),
            Sizes::About(bytes) => bytes,
        }
    }

    /// The document for `id` as served, with `{base}` in its URLs (the server replaces it).
    ///
    /// A fixture's own id grows its fixture (name, types, abilities, stats, its `null`s and
    /// its drift field `cries` kept). Any other id is made from a fixture chosen by id
    /// (never haunter, whose `base_experience` is `null`): same types and abilities, so
    /// references resolve to the fixtures' type and ability documents, with `id`, `name`,
    /// `order`, `species`, `forms` and sprites rewritten and no drift field.
    pub fn document(&self, id: u32) -> String {
        let mut doc = match self.fixtures.get(&id) {
            Some(fixture) => fixture.clone(),
            None => {
                let mut doc = self.template(id).clone();
                let name = self.name(id);
                doc["id"] = json!(id);
                doc["name"] = json!(name);
                doc["order"] = json!(id);
                doc["species"] =
                    json!({"name": name, "url": format!("{{base}}/pokemon-species/{id}/")});
                doc["forms"] =
                    json!([{"name": name, "url": format!("{{base}}/pokemon-form/{id}/")}]);
                doc["location_area_encounters"] =
                    json!(format!("{{base}}/pokemon/{id}/encounters"));
                doc["game_indices"] = json!([]);
                doc["sprites"] = basic_sprites(id);
                if let Some(obj) = doc.as_object_mut() {
                    // Drift belongs to the one fixture that carries it, not to thousands of copies.
                    obj.remove("cries");
                }
                doc
            }
        };
        let target = self.target_size(id);
        let mut moves = doc["moves"].as_array().cloned().unwrap_or_default();
        doc["moves"] = json!([]);
        if self.sizes == Sizes::Real {
            doc["sprites"] = real_sprites(id, self.has_female_form(id));
            doc["game_indices"] = game_indices(id);
            doc["held_items"] = held_items(id);
        }
        // What is there besides the moves, then moves until the document is large enough.
        let mut size = served_len(&doc) + moves.iter().map(|m| served_len(m) + 1).sum::<usize>();
        let mut k: u32 = 0;
        while size < target {
            let entry = match self.sizes {
                Sizes::Real => real_move(id, k),
                Sizes::About(_) => padding_move(id, k),
            };
            size += served_len(&entry) + 1;
            moves.push(entry);
            k += 1;
        }
        doc["moves"] = Value::Array(moves);
        doc.to_string()
    }

    /// Pikachu and a few in twenty others have female sprites.
    fn has_female_form(&self, id: u32) -> bool {
        id == 25 || mix(u64::from(id)).is_multiple_of(20)
    }

    /// Routes serving `/pokemon/1/` to `/pokemon/{count}/` (and each by name), made on
    /// request, plus every fixture route (types, abilities, the lists). Fixture ids up to
    /// `count` are rendered once here, under their id and name. The `/pokemon/` list still
    /// names only the fixtures.
    pub fn routes(self, fixtures: &Fixtures, count: u32) -> Routes {
        let mut routes = fixtures.routes();
        let mut fixture_ids: Vec<u32> = self.fixtures.keys().copied().collect();
        fixture_ids.sort_unstable();
        for id in fixture_ids.into_iter().filter(|id| *id <= count) {
            let body = self.document(id);
            routes.insert(format!("/pokemon/{id}/"), Route::json(body.clone()));
            routes.insert(format!("/pokemon/{}/", self.name(id)), Route::json(body));
        }
        let this = Arc::new(self);
        routes.generate("/pokemon/", move |rest| {
            let segment = rest.strip_suffix('/').unwrap_or(rest);
            // By id (`5000`) or by the generated name (`charmander-5000`).
            let (id, by_name) = match segment.parse::<u32>() {
                Ok(id) => (id, None),
                Err(_) => {
                    let (_, id) = segment.rsplit_once('-')?;
                    (id.parse::<u32>().ok()?, Some(segment))
                }
            };
            if id == 0 || id > count || this.is_fixture(id) {
                return None;
            }
            if by_name.is_some_and(|name| this.name(id) != name) {
                return None;
            }
            Some(Route::json(this.document(id)))
        })
    }
}

/// splitmix64: a well-mixed 64-bit value from `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Length of `value` as served: `{base}` becomes `http://127.0.0.1:PORT` (up to 22 bytes).
fn served_len(value: &Value) -> usize {
    let text = value.to_string();
    let bases = text.matches(BASE_PLACEHOLDER).count();
    text.len() + bases * ("http://127.0.0.1:65535".len() - BASE_PLACEHOLDER.len())
}

fn named(name: &str, path: &str, id: u32) -> Value {
    json!({"name": name, "url": format!("{{base}}/{path}/{id}/")})
}

/// The eight sprite URLs of the compact shape.
fn basic_sprites(id: u32) -> Value {
    json!({
        "back_default": format!("{{base}}/media/sprites/pokemon/back/{id}.png"),
        "back_female": null,
        "back_shiny": format!("{{base}}/media/sprites/pokemon/back/shiny/{id}.png"),
        "back_shiny_female": null,
        "front_default": format!("{{base}}/media/sprites/pokemon/{id}.png"),
        "front_female": null,
        "front_shiny": format!("{{base}}/media/sprites/pokemon/shiny/{id}.png"),
        "front_shiny_female": null,
    })
}

/// One game's sprites: each key a URL under `dir`, `*female*` keys `null` unless `female`.
fn sprite_set(dir: &str, keys: &[&str], id: u32, ext: &str, female: bool) -> Value {
    let mut out = Map::new();
    for key in keys {
        let v = if key.contains("female") && !female {
            Value::Null
        } else {
            let path = key.replace("_default", "").replace('_', "/");
            let path = path.trim_start_matches("front").trim_start_matches('/');
            let sub = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            json!(format!(
                "{{base}}/media/sprites/pokemon/{dir}{sub}{id}.{ext}"
            ))
        };
        out.insert((*key).to_string(), v);
    }
    Value::Object(out)
}

const EIGHT: &[&str] = &[
    "back_default",
    "back_female",
    "back_shiny",
    "back_shiny_female",
    "front_default",
    "front_female",
    "front_shiny",
    "front_shiny_female",
];
const FOUR_FRONT: &[&str] = &[
    "front_default",
    "front_female",
    "front_shiny",
    "front_shiny_female",
];

/// PokeAPI's whole `sprites` tree (about 15–17 KB as served).
fn real_sprites(id: u32, female: bool) -> Value {
    let v = |dir: &str, keys: &[&str], ext: &str| sprite_set(dir, keys, id, ext, female);
    let gen1 = &[
        "back_default",
        "back_gray",
        "back_transparent",
        "front_default",
        "front_gray",
        "front_transparent",
    ];
    let gold = &[
        "back_default",
        "back_shiny",
        "front_default",
        "front_shiny",
        "front_transparent",
    ];
    let crystal = &[
        "back_default",
        "back_shiny",
        "back_shiny_transparent",
        "back_transparent",
        "front_default",
        "front_shiny",
        "front_shiny_transparent",
        "front_transparent",
    ];
    let four = &["back_default", "back_shiny", "front_default", "front_shiny"];
    let mut bw = v("versions/generation-v/black-white/", EIGHT, "png");
    bw["animated"] = v("versions/generation-v/black-white/animated/", EIGHT, "gif");
    let mut top = v("", EIGHT, "png");
    top["other"] = json!({
        "dream_world": v("other/dream-world/", &["front_default", "front_female"], "svg"),
        "home": v("other/home/", FOUR_FRONT, "png"),
        "official-artwork": v("other/official-artwork/", &["front_default", "front_shiny"], "png"),
        "showdown": v("other/showdown/", EIGHT, "gif"),
    });
    top["versions"] = json!({
        "generation-i": {
            "red-blue": v("versions/generation-i/red-blue/", gen1, "png"),
            "yellow": v("versions/generation-i/yellow/", gen1, "png"),
        },
        "generation-ii": {
            "crystal": v("versions/generation-ii/crystal/", crystal, "png"),
            "gold": v("versions/generation-ii/gold/", gold, "png"),
            "silver": v("versions/generation-ii/silver/", gold, "png"),
        },
        "generation-iii": {
            "emerald": v("versions/generation-iii/emerald/", &["front_default", "front_shiny"], "png"),
            "firered-leafgreen": v("versions/generation-iii/firered-leafgreen/", four, "png"),
            "ruby-sapphire": v("versions/generation-iii/ruby-sapphire/", four, "png"),
        },
        "generation-iv": {
            "diamond-pearl": v("versions/generation-iv/diamond-pearl/", EIGHT, "png"),
            "heartgold-soulsilver": v("versions/generation-iv/heartgold-soulsilver/", EIGHT, "png"),
            "platinum": v("versions/generation-iv/platinum/", EIGHT, "png"),
        },
        "generation-v": {"black-white": bw},
        "generation-vi": {
            "omegaruby-alphasapphire": v("versions/generation-vi/omegaruby-alphasapphire/", FOUR_FRONT, "png"),
            "x-y": v("versions/generation-vi/x-y/", FOUR_FRONT, "png"),
        },
        "generation-vii": {
            "icons": v("versions/generation-vii/icons/", &["front_default", "front_female"], "png"),
            "ultra-sun-ultra-moon": v("versions/generation-vii/ultra-sun-ultra-moon/", FOUR_FRONT, "png"),
        },
        "generation-viii": {
            "icons": v("versions/generation-viii/icons/", &["front_default", "front_female"], "png"),
        },
    });
    top
}

/// PokeAPI's games, with their version ids.
const VERSIONS: [(&str, u32); 20] = [
    ("red", 1),
    ("blue", 2),
    ("yellow", 3),
    ("gold", 4),
    ("silver", 5),
    ("crystal", 6),
    ("ruby", 7),
    ("sapphire", 8),
    ("emerald", 9),
    ("firered", 10),
    ("leafgreen", 11),
    ("diamond", 12),
    ("pearl", 13),
    ("platinum", 14),
    ("heartgold", 15),
    ("soulsilver", 16),
    ("black", 17),
    ("white", 18),
    ("black-2", 21),
    ("white-2", 22),
];

/// One `game_indices` entry per game (the index is the id, as PokeAPI has it for most).
fn game_indices(id: u32) -> Value {
    Value::Array(
        VERSIONS
            .iter()
            .map(|(name, vid)| json!({"game_index": id, "version": named(name, "version", *vid)}))
            .collect(),
    )
}

/// None, one or two held items, each with the games it is held in.
fn held_items(id: u32) -> Value {
    let h = mix(u64::from(id) ^ 0x4845_4c44);
    let items = [
        ("oran-berry", 132),
        ("light-ball", 213),
        ("silk-scarf", 251),
    ];
    Value::Array(
        (0..(h % 3) as usize)
            .map(|i| {
                let (name, item_id) = items[(i + (h >> 8) as usize) % items.len()];
                let details: Vec<Value> = VERSIONS[8..]
                    .iter()
                    .map(|(v, vid)| {
                        json!({"rarity": 5 + (h >> 16) % 50, "version": named(v, "version", *vid)})
                    })
                    .collect();
                json!({"item": named(name, "item", item_id), "version_details": details})
            })
            .collect(),
    )
}

/// PokeAPI's version groups, with their ids.
const VERSION_GROUPS_ALL: [(&str, u32); 27] = [
    ("red-blue", 1),
    ("yellow", 2),
    ("gold-silver", 3),
    ("crystal", 4),
    ("ruby-sapphire", 5),
    ("emerald", 6),
    ("firered-leafgreen", 7),
    ("diamond-pearl", 8),
    ("platinum", 9),
    ("heartgold-soulsilver", 10),
    ("black-white", 11),
    ("colosseum", 12),
    ("xd", 13),
    ("black-2-white-2", 14),
    ("x-y", 15),
    ("omega-ruby-alpha-sapphire", 16),
    ("sun-moon", 17),
    ("ultra-sun-ultra-moon", 18),
    ("lets-go-pikachu-lets-go-eevee", 19),
    ("sword-shield", 20),
    ("the-isle-of-armor", 21),
    ("the-crown-tundra", 22),
    ("brilliant-diamond-and-shining-pearl", 23),
    ("legends-arceus", 24),
    ("scarlet-violet", 25),
    ("the-teal-mask", 26),
    ("the-indigo-disk", 27),
];

const LEARN_METHODS: [(&str, u32); 4] = [("level-up", 1), ("egg", 2), ("tutor", 3), ("machine", 4)];

/// The `k`-th padding move of `id` in PokeAPI's real shape: learnt in 1 to 27 version
/// groups (as PokeAPI's moves are: a handful for most, every group for some).
fn real_move(id: u32, k: u32) -> Value {
    let h = mix(u64::from(id) << 32 | u64::from(k));
    let move_id = 1 + (id.wrapping_mul(31).wrapping_add(k.wrapping_mul(7))) % 900;
    let (method, method_id) = LEARN_METHODS[(h % 4) as usize];
    let groups = 1 + ((h >> 8) % 27) as usize;
    let first = ((h >> 16) % (28 - groups as u64)) as usize;
    let details: Vec<Value> = VERSION_GROUPS_ALL[first..first + groups]
        .iter()
        .map(|(group, group_id)| {
            json!({
                "level_learned_at": if method == "level-up" { (move_id + group_id) % 60 } else { 0 },
                "move_learn_method": named(method, "move-learn-method", method_id),
                "order": null,
                "version_group": named(group, "version-group", *group_id),
            })
        })
        .collect();
    json!({
        "move": named(&format!("move-{move_id}"), "move", move_id),
        "version_group_details": details,
    })
}

/// The `k`-th padding move of `id` in the compact shape (six version groups).
fn padding_move(id: u32, k: u32) -> Value {
    let move_id = 1 + (id.wrapping_mul(31).wrapping_add(k.wrapping_mul(7))) % 900;
    let details: Vec<Value> = VERSION_GROUPS_ALL[..6]
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
