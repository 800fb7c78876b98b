//! The Pokémon example's mapping (`examples/pokemon/mapping.rs`) with its unit tests, compiled
//! here so `cargo test` runs them while building the example binary only once; and the
//! example's own mapping run over every hand-written fixture and over synthetic documents:
//! all validate against `pokemon.kye` except the documented cases (haunter's `null`
//! `base_experience` is quarantined, pikachu's `cries` is drift).

use std::path::{Path, PathBuf};

use kye::json::JsonDoc;
use kye::lang::validate::{validate_record, ErrorKind};
use kye::lang::Schema;
use kye::testing::{Fixtures, TestServer};
use serde_json::Value;

use crate::mapping;

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

/// A fixture document as a fetcher gets it from `ctx.get_json_doc`, `{base}` left in place.
fn doc(f: &Fixtures, path: &str) -> JsonDoc {
    let text = f
        .get(path)
        .unwrap_or_else(|| panic!("no fixture at {path}"));
    JsonDoc::parse(text).unwrap_or_else(|e| panic!("{path}: {e}"))
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
        let (model, map): (_, fn(&JsonDoc) -> kye::Result<Value>) = match folder {
            "pokemon" => ("Pokemon", mapping::map_pokemon),
            "type" => ("PokemonType", mapping::map_type),
            "ability" => ("PokemonAbility", mapping::map_ability),
            _ => continue,
        };
        if id.parse::<i64>().is_err() {
            continue;
        }
        let d = doc(&f, path);
        let name = d.get::<String>("name").unwrap().unwrap();
        let record = map(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
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
    let stat = mapping::map_ability(&doc(&f, "/ability/9/")).unwrap();
    assert!(stat["short_effect"]
        .as_str()
        .unwrap()
        .starts_with("Has a 30% chance of paralyzing"));
}

#[tokio::test]
async fn synthetic_pokemon_map_to_valid_records_with_no_drift() {
    use crate::synthetic::{Sizes, Synthetic};
    let schema = schema();
    let f = fixtures();
    // Real sizes (20–600 KB) take longer to make and read: fewer of them.
    for (sizes, step) in [(Sizes::About(30_000), 97), (Sizes::Real, 701)] {
        let routes = Synthetic::new(&f, sizes).unwrap().routes(&f, 5_000);
        let server = TestServer::start(routes).await.unwrap();
        let cx = kye::Context::new();
        for id in (1..=5_000).step_by(step).chain([25, 93]) {
            let body = cx
                .get_json_doc(&server.url(&format!("/pokemon/{id}/")))
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let record = mapping::map_pokemon(&body).unwrap_or_else(|e| panic!("{id}: {e}"));
            let report = validate_record(&schema, "Pokemon", &record);
            let expect_valid = id != 93; // the fixture with base_experience: null
            assert_eq!(report.is_valid(), expect_valid, "{id}: {:?}", report.errors);
            // The only drift is pikachu's `cries`, with its value as example.
            let drift: Vec<(String, Option<Value>)> = report
                .warnings
                .iter()
                .map(|w| (w.edges[0].clone(), w.example.clone()))
                .collect();
            let expected: Vec<(String, Option<Value>)> = (id == 25)
                .then(|| ("cries".to_string(), body.value("cries").unwrap()))
                .into_iter()
                .collect();
            assert_eq!(drift, expected, "{id} {sizes:?}");
        }
    }
}
