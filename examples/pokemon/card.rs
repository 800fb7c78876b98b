//! The example's transformer: a `PokemonCard` per stored `Pokemon`, computed from the Pokémon
//! and the stored records of its types (`#[kye::transform]`). Pure: no HTTP, only lookups of
//! stored records, each recorded as lineage, so a card is computed again only when its
//! Pokémon or one of its types changed.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Pokemon, PokemonCard, PokemonType};

/// A Pokémon's card: its name, types and weaknesses (types dealing it more than 1x damage).
/// No card while one of its types is not stored (fetched without `--follow`): the card is
/// computed by the first run after the type is.
#[kye::transform(PokemonCard.id, from(Pokemon, PokemonType))]
async fn pokemon_card(
    pokemon: Value,
    ctx: &kye::TransformContext,
) -> kye::Result<Option<PokemonCard>> {
    let id = pokemon["id"].as_i64().ok_or_else(|| {
        kye::Error::permanent(format!(
            "a stored Pokémon without an integer id: {}",
            pokemon["id"]
        ))
    })?;
    let type_names: Vec<String> = pokemon["types"]
        .as_array()
        .into_iter()
        .flatten()
        // A stored reference is the type's key: `"grass"` or `{"name": "grass"}`.
        .filter_map(|t| {
            t.as_str()
                .or_else(|| t["name"].as_str())
                .map(str::to_string)
        })
        .collect();
    let mut types = Vec::with_capacity(type_names.len());
    for name in &type_names {
        match ctx.get::<PokemonType>(name.as_str())? {
            Some(t) => types.push(t),
            None => return Ok(None),
        }
    }
    Ok(Some(PokemonCard {
        id,
        name: pokemon["name"].as_str().unwrap_or_default().to_string(),
        types: type_names,
        weaknesses: weaknesses(&types),
    }))
}

/// The types whose moves hit a Pokémon of `types` for more than 1x: the product over its
/// types of 2 (double damage from), 0.5 (half damage from) and 0 (no damage from). Sorted by
/// name.
pub fn weaknesses(types: &[PokemonType]) -> Vec<String> {
    let mut multiplier: BTreeMap<&str, f64> = BTreeMap::new();
    for t in types {
        let relations = [
            (&t.double_damage_from, 2.0),
            (&t.half_damage_from, 0.5),
            (&t.no_damage_from, 0.0),
        ];
        for (attackers, factor) in relations {
            for a in attackers {
                *multiplier.entry(a.as_str()).or_insert(1.0) *= factor;
            }
        }
    }
    multiplier
        .into_iter()
        .filter(|(_, m)| *m > 1.0)
        .map(|(name, _)| name.to_string())
        .collect()
}
