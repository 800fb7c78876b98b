//! One record, one shape: a record answered right after a read-through fetch
//! (`"source": "fetched"`) is the record a later read answers from the store
//! (`"source": "store"`), references and all, on SQLite and on PostgreSQL. The fetcher
//! returns references as bare keys (`"abilities": ["static"]`), as fetchers may; the store
//! renders them as objects (`[{"name": "static"}]`), and so must the fetched answer.

use std::sync::OnceLock;

use kye_lang::Schema;
use kye_runtime::testing::{FetcherBuilder, Route, Routes, TestServer};
use kye_runtime::{
    Context, Error, FetchFuture, FetcherRegistration, Key, KeyValue, RegisteredModel, Registry,
};
use serde_json::json;

use crate::server_api::{drop_postgres_schema, postgres_spec, Fixture};

const SCHEMA: &str = r#"
Pokemon(id: Number)(name) {
  name: String
  abilities: PokemonAbility+
  hidden_ability: PokemonAbility?
}
PokemonAbility(name: String) {
  effect: String?
}
"#;

fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| kye_lang::compile_str("shape.kye", SCHEMA).expect("schema compiles"))
}

/// Maps the source's document as it comes: references as the abilities' names.
fn pokemon_by_id(key: &Key, ctx: Context) -> FetchFuture {
    let key = key.clone();
    Box::pin(async move {
        let Some(KeyValue::Int(id)) = key.values().first().cloned() else {
            return Err(Error::permanent("bad key"));
        };
        let base = ctx
            .config_str("rel.base_url")
            .ok_or_else(|| Error::permanent("rel.base_url is not configured"))?;
        let doc = ctx.get_json_value(&format!("{base}/pokemon/{id}/")).await?;
        Ok(Some(json!({
            "id": doc["id"],
            "name": doc["name"],
            "abilities": doc["abilities"],
            "hidden_ability": doc["hidden_ability"],
        })))
    })
}

static POKEMON_BY_ID: FetcherRegistration =
    FetcherBuilder::new("Pokemon", &["id"], "pokemon_by_id", pokemon_by_id)
        .doc("Pokémon by id, abilities by name.")
        .build();

fn registry() -> Registry {
    Registry::from_parts(
        [
            RegisteredModel::new(schema(), "Pokemon").expect("model"),
            RegisteredModel::new(schema(), "PokemonAbility").expect("model"),
        ],
        [&POKEMON_BY_ID],
    )
    .expect("registry")
}

/// Pikachu (25) with two abilities and a hidden one; 26 without abilities (invalid: `+`).
async fn source() -> TestServer {
    let pikachu = json!({"id": 25, "name": "pikachu", "abilities": ["static", "lightning-rod"],
                         "hidden_ability": "lightning-rod"});
    let bare = json!({"id": 26, "name": "raichu", "abilities": [], "hidden_ability": null});
    let routes = Routes::new()
        .route("/pokemon/25/", Route::json(pikachu.to_string()))
        .route("/pokemon/26/", Route::json(bare.to_string()));
    TestServer::start(routes).await.expect("source starts")
}

/// Reads Pikachu through (fetched), then from the store: one shape, references as objects.
async fn fetched_and_stored_answers_agree(store_spec: Option<&str>) {
    let source = source().await;
    let base = source.base_url().to_string();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("kye.db").display());
    let spec = store_spec.map_or(sqlite, str::to_string);
    let f = Fixture::start_registry(
        registry(),
        source,
        &base,
        dir,
        &spec,
        "",
        kye_runtime::Secrets::empty(),
    )
    .await;
    let path = "/v1/models/Pokemon/records?id=25";
    let (s, _, fetched) = f.get(Some("fetcher"), path).await;
    assert_eq!(
        (s, &fetched["source"]),
        (200, &json!("fetched")),
        "{fetched}"
    );
    let (s, _, stored) = f.get(Some("reader"), &format!("{path}&max_age=1h")).await;
    assert_eq!((s, &stored["source"]), (200, &json!("store")), "{stored}");
    assert_eq!(f.source.requests("/pokemon/25/"), 1);
    assert_eq!(fetched["record"], stored["record"], "{fetched}\n{stored}");
    assert_eq!(
        stored["record"],
        json!({
            "id": 25,
            "name": "pikachu",
            "abilities": [{"name": "static"}, {"name": "lightning-rod"}],
            "hidden_ability": {"name": "lightning-rod"},
        }),
        "{stored}"
    );
    // The fetched answer's time is the store's, as the store answer gives it.
    assert_eq!(
        fetched["stored_at"], stored["stored_at"],
        "{fetched}\n{stored}"
    );
    // A rejected record: 422 with its errors, no record in any shape, nothing stored.
    let (s, _, body) = f
        .get(Some("fetcher"), "/v1/models/Pokemon/records?id=26")
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.get("record").is_none(), "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("abilities")),
        "{body}"
    );
    let (s, _, body) = f
        .get(Some("reader"), "/v1/models/Pokemon/records?id=26")
        .await;
    assert_eq!(s, 404, "{body}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_record_has_the_shape_of_the_stored_one() {
    fetched_and_stored_answers_agree(None).await;
}

/// The same on PostgreSQL (skipped, saying so, when nothing answers at `KYE_TEST_POSTGRES`,
/// outside CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_record_has_the_shape_of_the_stored_one_on_postgresql() {
    let Some((url, spec)) = postgres_spec("kye_shape") else {
        return;
    };
    fetched_and_stored_answers_agree(Some(&spec)).await;
    drop_postgres_schema(&url, "kye_shape");
}
