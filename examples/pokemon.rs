//! The Pokémon example: four fetchers for PokeAPI (<https://pokeapi.co/docs/v2>) and the kye
//! command line around them.
//!
//! ```text
//! cargo run --example pokemon                    # the demo: Pokémon 1..=151 from PokeAPI into ./kye.db
//! cargo run --example pokemon -- --offline       # the same from bundled fixtures on 127.0.0.1
//! cargo run --example pokemon -- fetch 'Pokemon.id in 1..=20' --follow
//! cargo run --example pokemon -- get 'Pokemon.name = "pikachu"'
//! cargo run --example pokemon -- show Pokemon --limit 5 --format json
//! cargo run --example pokemon -- runs | rejects | drift | list
//! ```
//!
//! The example's own flag (`--offline`) comes before the subcommand; kye's global flags
//! (`--db`, `--config`, `--format`, `-v`, `-q`) go anywhere.
//!
//! The base URL is `https://pokeapi.co/api/v2`, unless `pokeapi.base_url` is set in kye.toml
//! (or `KYE_POKEAPI__BASE_URL`), or `POKEAPI_BASE_URL` is set. `--offline` serves
//! `examples/pokemon/fixtures/` on loopback and points the fetchers there.
//!
//! The models are in `examples/pokemon/pokemon.kye`. Mapping PokeAPI's documents onto them is
//! the fetchers' job; validating is kye's. The fetchers never invent a value: a `null` from
//! the API stays `null`, and kye quarantines a record that lacks a required edge.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use kye::cli::{Command, FetchArgs, Global, GlobalArgs, Run, ShowArgs};
use serde_json::{Map, Value};

kye::models!("examples/pokemon/pokemon.kye");

/// PokeAPI's public endpoint.
const DEFAULT_BASE_URL: &str = "https://pokeapi.co/api/v2";
/// What the demo fetches.
const DEMO_REQUEST: &str = "Pokemon.id in 1..=151";
/// How long the network check waits for DNS and a TCP connect.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------
// Fetchers
// ---------------------------------------------------------------------------------------

/// Fetches a Pokémon by national Pokédex number: `GET {base}/pokemon/{id}/`.
#[kye::get(Pokemon.id)]
async fn pokemon_by_id(id: u32, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_value(&format!("{}/pokemon/{id}/", base_url(ctx)))
        .await?;
    map_pokemon(doc)
}

/// Fetches a Pokémon by name (`pikachu`, `mr-mime`): `GET {base}/pokemon/{name}/`.
#[kye::get(Pokemon.name)]
async fn pokemon_by_name(name: String, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_value(&format!("{}/pokemon/{}/", base_url(ctx), segment(&name)))
        .await?;
    map_pokemon(doc)
}

/// Fetches a type with its damage relations: `GET {base}/type/{name}/`.
#[kye::get(PokemonType.name)]
async fn type_by_name(name: String, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_value(&format!("{}/type/{}/", base_url(ctx), segment(&name)))
        .await?;
    map_type(doc)
}

/// Fetches an ability with its English effect text: `GET {base}/ability/{name}/`.
#[kye::get(PokemonAbility.name)]
async fn ability_by_name(name: String, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_value(&format!("{}/ability/{}/", base_url(ctx), segment(&name)))
        .await?;
    map_ability(doc)
}

/// `pokeapi.base_url` from kye.toml / `KYE_POKEAPI__BASE_URL` (the `--offline` server sets
/// it too), else `POKEAPI_BASE_URL`, else PokeAPI itself.
fn base_url(ctx: &kye::Context) -> String {
    choose_base_url(ctx.config("pokeapi.base_url"))
}

fn choose_base_url(configured: Option<String>) -> String {
    configured
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("POKEAPI_BASE_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// A key as one URL path segment: anything but unreserved characters is percent-encoded, so
/// a name such as `../type` or `a/b` cannot leave the resource it is a key of.
fn segment(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.chars().all(|c| c == '.') {
        out = out.replace('.', "%2E");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Mapping PokeAPI documents onto the models
// ---------------------------------------------------------------------------------------

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
fn map_pokemon(doc: Value) -> kye::Result<Value> {
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
fn map_type(doc: Value) -> kye::Result<Value> {
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
fn map_ability(doc: Value) -> kye::Result<Value> {
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

// ---------------------------------------------------------------------------------------
// The binary: kye's command line plus `--offline` and the demo
// ---------------------------------------------------------------------------------------

/// kye's Pokémon example: fetch Pokémon, their types and abilities from PokeAPI into a SQLite
/// database, validated against examples/pokemon/pokemon.kye.
///
/// Without a subcommand it runs the demo: Pokémon 1..=151 with their types and abilities.
#[derive(Debug, Parser)]
#[command(name = "pokemon", version)]
struct Cli {
    /// Serve the bundled PokeAPI fixtures on 127.0.0.1 and fetch from there (no network
    /// needed). Goes before the subcommand.
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    kye: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                kye::cli::EXIT_USAGE
            } else {
                kye::cli::EXIT_OK
            });
        }
    };
    let mut g = cli.kye.to_global();
    kye::cli::init_logging(&g);
    let fetches = matches!(
        cli.command,
        None | Some(Command::Get(_) | Command::Fetch(_))
    );
    // Kept alive until the end of main: the fixture server runs on its own thread.
    let mut _server = None;
    if cli.offline {
        match offline_server() {
            Ok(server) => {
                g.config_overrides
                    .push(("pokeapi.base_url".into(), server.base_url().to_string()));
                _server = Some(server);
            }
            Err(e) => {
                eprintln!("error: cannot start the offline PokeAPI server: {e}");
                return ExitCode::from(kye::cli::EXIT_USAGE);
            }
        }
    } else if fetches {
        let configured = kye::cli::load_config(&g)
            .ok()
            .and_then(|c| c.get_str("pokeapi.base_url"));
        let base = choose_base_url(configured);
        if let Err(why) = reachable(&base) {
            eprintln!(
                "pokemon: cannot reach {base} ({why}); without network, run `cargo run --example pokemon -- --offline` to use the bundled fixtures"
            );
            return ExitCode::from(kye::cli::EXIT_UNAVAILABLE);
        }
    }
    match cli.command {
        Some(command) => command.run(&g),
        None => demo(&g, cli.offline),
    }
}

/// The bundled fixtures on a loopback server (`/pokemon/25/`, `/type/electric/`, ...).
fn offline_server() -> std::io::Result<kye::testing::TestServer> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pokemon/fixtures");
    let fixtures = kye::testing::Fixtures::from_dir(&dir)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", dir.display())))?;
    kye::testing::TestServer::start_on_thread(fixtures.routes())
}

/// Whether `base`'s host answers a TCP connect within [`REACH_TIMEOUT`] (DNS included).
fn reachable(base: &str) -> Result<(), String> {
    let rest = base
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| "not an http(s) URL".to_string())?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !authority.ends_with(']'));
    let target = if has_port {
        authority.to_string()
    } else if base.starts_with("https") {
        format!("{authority}:443")
    } else {
        format!("{authority}:80")
    };
    // DNS has no timeout of its own: resolve on a thread and stop waiting after the timeout.
    let (tx, rx) = mpsc::channel();
    let name = target.clone();
    std::thread::spawn(move || {
        let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    });
    let addrs = match rx.recv_timeout(REACH_TIMEOUT) {
        Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
        Ok(Ok(_)) => return Err("no address".into()),
        Ok(Err(e)) => return Err(format!("DNS: {e}")),
        Err(_) => return Err("DNS timed out".into()),
    };
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, REACH_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The demo: Pokémon 1..=151 with references followed, the summary, a few stored rows, where
/// the data is and how to query it.
fn demo(g: &Global, offline: bool) -> ExitCode {
    let text = g.format == kye::cli::Format::Text && !g.quiet;
    if text {
        println!(
            "kye Pokémon demo: fetching `{DEMO_REQUEST}` {}, following their types and abilities\n",
            if offline {
                "from the bundled fixtures (14 Pokémon; the other ids end `missing`)"
            } else {
                "from PokeAPI"
            }
        );
    }
    let mut fetch = FetchArgs::new(DEMO_REQUEST);
    fetch.follow = Some(1);
    let summary = match fetch.execute(g) {
        Ok(s) => s,
        Err(code) => return code,
    };
    kye::cli::print_fetch_summary(&summary, g);
    if text {
        println!("\nSome stored Pokémon (`show Pokemon`):\n");
        ShowArgs::new("Pokemon", Some(5)).run(g);
        let location = kye::cli::store_spec(g)
            .map(|s| {
                let p = s.path();
                std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
            })
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "kye.db".into());
        println!("\nThe data is in {location}. Query it with sqlite3:\n");
        println!(
            "  sqlite3 -header -column {location} \"SELECT p.id, p.name, group_concat(t.value, '/') AS types, p.base_experience FROM Pokemon p JOIN Pokemon__types t USING (id) GROUP BY p.id ORDER BY p.id LIMIT 10;\""
        );
        println!(
            "\nMore: `cargo run --example pokemon -- {}rejects` (quarantined records), `drift`, `runs`, `show PokemonType`.",
            if offline { "--offline " } else { "" }
        );
    }
    // The demo exists to show what happens, rejects included: a completed run is a success.
    match kye::cli::fetch_exit_code(&summary) {
        kye::cli::EXIT_DATA => ExitCode::from(kye::cli::EXIT_OK),
        code => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_segments_cannot_escape_the_resource() {
        assert_eq!(segment("mr-mime"), "mr-mime");
        assert_eq!(segment("../type"), "..%2Ftype");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("a b"), "a%20b");
    }

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
        // The mapped record is the generated type's shape.
        let typed: PokemonAbility = serde_json::from_value(out).unwrap();
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
    fn base_url_order() {
        assert_eq!(
            choose_base_url(Some("http://127.0.0.1:9/".into())),
            "http://127.0.0.1:9"
        );
    }
}
