//! The Pokémon example's mapping (`examples/pokemon/mapping.rs`) with its unit tests, compiled
//! here so `cargo test` runs them while building the example binary only once; and the
//! example's own mapping run over every hand-written fixture and over synthetic documents:
//! all validate against `pokemon.kye` except the documented cases (haunter's `null`
//! `base_experience` is quarantined, pikachu's `cries` is drift).

use std::path::{Path, PathBuf};

use kye::lang::validate::{validate_record, ErrorKind};
use kye::lang::Schema;
use kye::testing::{Fixtures, TestServer};
use serde_json::Value;

kye::models!("examples/pokemon/pokemon.kye");

#[path = "../examples/pokemon/mapping.rs"]
#[allow(dead_code)]
mod mapping;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon")
}

fn schema() -> Schema {
    let text = std::fs::read_to_string(example_dir().join("pokemon.kye")).unwrap();
    kye::lang::compile_str("pokemon.kye", &text).unwrap_or_else(|e| panic!("{}", e.render(false)))
}

fn fixtures() -> Fixtures {
    Fixtures::from_dir(example_dir().join("fixtures")).unwrap()
}

/// A fixture document, with `{base}` left in place.
fn doc(f: &Fixtures, path: &str) -> Value {
    let text = f
        .get(path)
        .unwrap_or_else(|| panic!("no fixture at {path}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn mapped_fixtures_validate_except_the_documented_cases() {
    let schema = schema();
    let f = fixtures();
    let mut quarantined = Vec::new();
    let mut drift = Vec::new();
    // Every by-id document (`/pokemon/25/`; the by-name routes serve the same documents).
    for path in f.paths() {
        let Some((folder, id)) = path.trim_matches('/').split_once('/') else {
            continue;
        };
        let (model, map): (_, fn(Value) -> kye::Result<Value>) = match folder {
            "pokemon" => ("Pokemon", mapping::map_pokemon),
            "type" => ("PokemonType", mapping::map_type),
            "ability" => ("PokemonAbility", mapping::map_ability),
            _ => continue,
        };
        if id.parse::<i64>().is_err() {
            continue;
        }
        let d = doc(&f, path);
        let name = d["name"].as_str().unwrap().to_owned();
        let record = map(d).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = validate_record(&schema, model, &record);
        for w in &report.warnings {
            assert_eq!(w.kind, ErrorKind::UnknownEdge, "{name}: {w}");
            drift.push((name.clone(), w.edges.clone()));
        }
        if !report.is_valid() {
            let kinds: Vec<(ErrorKind, Vec<String>)> = report
                .errors
                .iter()
                .map(|e| (e.kind, e.edges.clone()))
                .collect();
            quarantined.push((name, kinds));
        }
    }
    assert_eq!(
        quarantined,
        [(
            "haunter".to_owned(),
            vec![(ErrorKind::MissingValue, vec!["base_experience".to_owned()])]
        )]
    );
    assert_eq!(drift, [("pikachu".to_owned(), vec!["cries".to_owned()])]);

    // German first: the mapping took the English text.
    let stat = mapping::map_ability(doc(&f, "/ability/9/")).unwrap();
    assert!(stat["short_effect"]
        .as_str()
        .unwrap()
        .starts_with("Has a 30% chance of paralyzing"));
}

#[tokio::test]
async fn synthetic_pokemon_map_to_valid_records_with_no_drift() {
    use kye::testing::pokeapi::synthetic_pokemon;
    let schema = schema();
    let server = TestServer::start(synthetic_pokemon(&fixtures(), 5_000, 30_000).unwrap())
        .await
        .unwrap();
    let cx = kye::Context::new();
    // Every 97th id, and the two fixtures served as they are: haunter (#93, `base_experience:
    // null`) and pikachu (#25, `cries` is drift).
    for id in (1..=5_000).step_by(97).chain([25, 93]) {
        let body = cx
            .get_json_value(&server.url(&format!("/pokemon/{id}/")))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let record = mapping::map_pokemon(body).unwrap_or_else(|e| panic!("{id}: {e}"));
        let report = validate_record(&schema, "Pokemon", &record);
        assert_eq!(report.is_valid(), id != 93, "{id}: {:?}", report.errors);
        assert_eq!(
            report.warnings.is_empty(),
            id != 25,
            "{id}: {:?}",
            report.warnings
        );
    }
}
