//! The example's transformer (`examples/pokemon/card.rs`): a `PokemonCard` per stored Pokémon,
//! through the example binary against its offline fixtures into a real SQLite store, and
//! incremental: a second run computes nothing, a changed input computes exactly the cards that
//! read it.

use kye::store::{IndexKey, Provenance, RecordWrite, StoreSpec, WriteItem};
use kye::{Config, Runtime};
use serde_json::{json, Value};

use crate::card::weaknesses;
use crate::pokemon::Sandbox;
use crate::PokemonType;

fn fixtures_server() -> kye::testing::TestServer {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let fixtures = kye::testing::Fixtures::from_dir(&dir).unwrap();
    kye::testing::TestServer::start_on_thread(fixtures.routes()).unwrap()
}

fn ty(name: &str, double: &[&str], half: &[&str], none: &[&str]) -> PokemonType {
    serde_json::from_value(json!({
        "name": name, "id": 1, "generation": "generation-i",
        "double_damage_from": double, "half_damage_from": half, "no_damage_from": none,
    }))
    .unwrap()
}

#[test]
fn weaknesses_multiply_the_damage_relations_of_every_type() {
    // Ground is immune to electric (0x) even where the other type is weak to it (2x).
    let water = ty(
        "water",
        &["grass", "electric"],
        &["fire", "water", "ice", "steel"],
        &[],
    );
    let ground = ty(
        "ground",
        &["water", "grass", "ice"],
        &["poison", "rock"],
        &["electric"],
    );
    assert_eq!(weaknesses(&[water.clone(), ground]), ["grass"]);
    assert_eq!(weaknesses(&[water]), ["electric", "grass"]);
    assert!(weaknesses(&[]).is_empty());
}

/// The last line of a run's stdout that starts with `transform`.
fn transform_line(out: &str) -> String {
    out.lines()
        .rfind(|l| l.starts_with("transform "))
        .unwrap_or_default()
        .to_string()
}

fn stored_card(sandbox: &Sandbox, id: i64) -> Value {
    let spec: StoreSpec = format!("sqlite:{}", sandbox.db().display())
        .parse()
        .unwrap();
    let store = kye::store::open_store_read_only(&spec).unwrap();
    store
        .record("PokemonCard", &IndexKey::single("id", id))
        .unwrap()
        .unwrap_or(Value::Null)
}

#[test]
fn cards_are_computed_after_a_fetch_and_recomputed_only_when_an_input_changes() {
    let s = Sandbox::new();
    let run = s
        .run(&["--offline", "fetch", "Pokemon.id = 1", "--follow"])
        .expect(0);
    assert!(
        transform_line(&run.stdout())
            .contains(": 1 transformed, 0 unchanged, 0 rejected, 0 failed"),
        "{}",
        run.stdout()
    );
    // Bulbasaur is grass/poison: weak to exactly fire, flying, ice and psychic.
    assert_eq!(
        stored_card(&s, 1),
        json!({"id": 1, "name": "bulbasaur", "types": ["grass", "poison"],
               "weaknesses": ["fire", "flying", "ice", "psychic"]})
    );
    // Provenance names the transformer.
    let spec: StoreSpec = format!("sqlite:{}", s.db().display()).parse().unwrap();
    let mut query = kye::store::RecordQuery::new("PokemonCard");
    query.provenance = true;
    let cards = kye::store::open_store_read_only(&spec)
        .unwrap()
        .records(&query)
        .unwrap();
    assert_eq!(cards[0]["_kye"]["fetcher"], "transform pokemon_card");

    // Nothing changed: nothing is computed.
    let again = s.run(&["transform"]).expect(0);
    assert!(
        transform_line(&again.stdout()).contains(": 0 transformed, 1 unchanged"),
        "{}",
        again.stdout()
    );

    // A new Pokémon: only its card is computed; `--no-transform` leaves it for later.
    let quiet = s
        .run(&[
            "--offline",
            "fetch",
            "Pokemon.id = 25",
            "--follow",
            "--no-transform",
        ])
        .expect(0);
    assert_eq!(transform_line(&quiet.stdout()), "", "{}", quiet.stdout());
    assert_eq!(stored_card(&s, 25), Value::Null);
    let later = s.run(&["transform", "PokemonCard"]).expect(0);
    assert!(
        transform_line(&later.stdout()).contains(": 1 transformed, 1 unchanged"),
        "{}",
        later.stdout()
    );
    assert_eq!(stored_card(&s, 25)["weaknesses"], json!(["ground"]));

    // A changed input (grass no longer weak to fire): exactly the cards that read it.
    {
        let spec: StoreSpec = format!("sqlite:{}", s.db().display()).parse().unwrap();
        let mut store = kye::store::open_store(&spec).unwrap();
        let mut grass = store
            .record("PokemonType", &IndexKey::single("name", "grass"))
            .unwrap()
            .unwrap();
        grass["double_damage_from"] = json!(["flying", "poison", "bug", "ice"]);
        let run = store
            .begin_run(&kye::store::NewRun::new("test: grass changes"))
            .unwrap();
        let written = store
            .write_batch(&[WriteItem::Record(RecordWrite::new(
                "PokemonType",
                grass,
                Provenance::new(run, "test"),
            ))])
            .unwrap();
        assert!(written[0].is_ok(), "{written:?}");
    }
    let changed = s.run(&["transform"]).expect(0);
    assert!(
        transform_line(&changed.stdout()).contains(": 1 transformed, 1 unchanged"),
        "{}",
        changed.stdout()
    );
    assert_eq!(
        stored_card(&s, 1)["weaknesses"],
        json!(["flying", "ice", "psychic"])
    );
    assert_eq!(stored_card(&s, 25)["weaknesses"], json!(["ground"]));
}

#[test]
fn a_pokemon_whose_type_is_not_stored_gets_its_card_once_the_type_is() {
    let s = Sandbox::new();
    let run = s.run(&["--offline", "fetch", "Pokemon.id = 25"]).expect(0);
    let out = run.stdout();
    assert!(
        transform_line(&out)
            .contains(": 0 transformed, 0 unchanged, 0 rejected, 0 failed, 1 without output"),
        "{out}"
    );
    assert_eq!(stored_card(&s, 25), Value::Null);

    let run = s
        .run(&["--offline", "fetch", "PokemonType.name = \"electric\""])
        .expect(0);
    assert!(
        transform_line(&run.stdout()).contains(": 1 transformed"),
        "{}",
        run.stdout()
    );
    assert_eq!(stored_card(&s, 25)["weaknesses"], json!(["ground"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dir_store_refuses_transformers_with_a_clear_error() {
    let server = fixtures_server();
    let tmp = tempfile::tempdir().unwrap();
    let rt = Runtime::builder()
        .config({
            let mut c = Config::default();
            c.set("pokeapi.base_url", server.base_url().to_string());
            c
        })
        .env(Vec::new())
        .store(format!("dir:{}", tmp.path().join("out").display()))
        .handle_ctrl_c(false)
        .build()
        .unwrap();
    let err = rt.transform(None).await.unwrap_err().to_string();
    assert!(err.contains("keeps no lineage"), "{err}");
}
