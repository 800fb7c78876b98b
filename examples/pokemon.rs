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
//! The fetchers belong to the `pokeapi` source (`kye::source!` below): `sources` lists what it
//! needs, `sources check` probes `Pokemon.id = 1`. Its base URL is `https://pokeapi.co/api/v2`,
//! unless `base_url` is set in its table of kye.toml (`[pokeapi] base_url = ...`, or
//! `KYE_POKEAPI__BASE_URL`), or `POKEAPI_BASE_URL` is set. `--offline` serves
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
use serde_json::Value;

#[path = "pokemon/card.rs"]
mod card;
#[path = "pokemon/mapping.rs"]
mod mapping;
use kye::http::{path_segment, Paginator};
use mapping::{map_ability, map_pokemon, map_type};

kye::models!("examples/pokemon/pokemon.kye");

/// PokeAPI's public endpoint.
const DEFAULT_BASE_URL: &str = "https://pokeapi.co/api/v2";
/// What the demo fetches.
const DEMO_REQUEST: &str = "Pokemon.id in 1..=151";
/// How long the network check waits for DNS and a TCP connect.
const REACH_TIMEOUT: Duration = Duration::from_secs(3);

kye::source! {
    /// PokeAPI: Pokémon, their types and abilities (public, no credentials).
    pokeapi {
        hosts: ["pokeapi.co"],
        config: {
            /// Where PokeAPI lives, e.g. a mirror (`--offline` points it at the bundled
            /// fixtures); unset, `POKEAPI_BASE_URL`, else https://pokeapi.co/api/v2.
            base_url: url?,
            /// Pokémon per page of the list (PokeAPI takes up to 100 000).
            list_limit: integer = 100,
        },
        probe: "Pokemon.id = 1",
    }
}

// ---------------------------------------------------------------------------------------
// Fetchers
// ---------------------------------------------------------------------------------------

/// Fetches a Pokémon by national Pokédex number: `GET {base}/pokemon/{id}/`.
#[kye::get(Pokemon.id, source = pokeapi)]
async fn pokemon_by_id(id: u32, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_doc(&format!("{}/pokemon/{id}/", base_url(ctx)?))
        .await?;
    map_pokemon(&doc)
}

/// Fetches a Pokémon by name (`pikachu`, `mr-mime`): `GET {base}/pokemon/{name}/`.
#[kye::get(Pokemon.name, source = pokeapi)]
async fn pokemon_by_name(name: String, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_doc(&format!(
            "{}/pokemon/{}/",
            base_url(ctx)?,
            path_segment(&name)?
        ))
        .await?;
    map_pokemon(&doc)
}

/// Fetches a type with its damage relations: `GET {base}/type/{name}/`.
#[kye::get(PokemonType.name, source = pokeapi)]
async fn type_by_name(name: String, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_doc(&format!(
            "{}/type/{}/",
            base_url(ctx)?,
            path_segment(&name)?
        ))
        .await?;
    map_type(&doc)
}

/// Fetches an ability with its English effect text: `GET {base}/ability/{name}/`.
#[kye::get(PokemonAbility.name, source = pokeapi)]
async fn ability_by_name(name: String, ctx: &kye::Context) -> kye::Result<Value> {
    let doc = ctx
        .get_json_doc(&format!(
            "{}/ability/{}/",
            base_url(ctx)?,
            path_segment(&name)?
        ))
        .await?;
    map_ability(&doc)
}

/// Every Pokémon PokeAPI lists: `GET {base}/pokemon/?limit=100`, then each page's `next`.
/// `fetch 'Pokemon'` fetches each as its page arrives.
#[kye::list(Pokemon.id, source = pokeapi)]
async fn all_pokemon(ctx: &kye::Context, keys: kye::Keys<u32>) -> kye::Result<()> {
    // Page size: the source's `list_limit` (declared with a default of 100).
    let limit = ctx.config::<u32>("list_limit")?.max(1);
    let paging = Paginator::next_url("next").items("results").total("count");
    let first = format!("{}/pokemon/?limit={limit}", base_url(ctx)?);
    // A run that stopped part-way continues after the last page whose Pokémon were all done.
    let resume = keys.resume_cursor()?;
    let mut pages = ctx.pages_from(&first, resume, &paging)?;
    while let Some(page) = pages.next().await? {
        // PokeAPI's `count`: the progress bar shows the whole listing from the first page.
        if let Some(total) = page.total {
            keys.set_total(total).await?;
        }
        for entry in &page.items {
            keys.send(id_in_url(entry)?).await?;
        }
        if let Some(at) = pages.position() {
            keys.save_cursor(&at).await?;
        }
    }
    Ok(())
}

/// The id at the end of a list entry's `url` (`.../pokemon/25/` → 25).
fn id_in_url(entry: &Value) -> kye::Result<u32> {
    let url = entry["url"].as_str().unwrap_or_default();
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| kye::Error::permanent(format!("a list entry without a Pokémon id: {entry}")))
}

/// The source's `base_url` (`[pokeapi] base_url` in kye.toml, `KYE_POKEAPI__BASE_URL`; the
/// `--offline` server sets it too), else `POKEAPI_BASE_URL`, else PokeAPI itself.
fn base_url(ctx: &kye::Context) -> kye::Result<String> {
    Ok(choose_base_url(ctx.config::<Option<String>>("base_url")?))
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

// ---------------------------------------------------------------------------------------
// The binary: kye's command line plus `--offline` and the demo
// ---------------------------------------------------------------------------------------

/// kye's Pokémon example: fetch Pokémon, their types and abilities from PokeAPI into a SQLite
/// database, validated against examples/pokemon/pokemon.kye.
///
/// Without a subcommand it runs the demo: Pokémon 1..=151 with their types and abilities.
#[derive(Debug, Parser)]
#[command(
    name = "pokemon",
    version,
    after_help = format!("pokemon is built with kye {}.", kye::cli::KYE_VERSION)
)]
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
/// The demo's list step: runs the `Pokemon` list function alone and counts the keys it finds
/// (nothing is fetched or stored). The number of keys and the first few.
fn list_keys(g: &Global) -> Result<(u64, Vec<String>), String> {
    let registry = kye::registry().map_err(|e| e.to_string())?;
    let lister = registry
        .lister("Pokemon")
        .ok_or("no list function for Pokemon")?;
    let fetcher = registry
        .fetcher("Pokemon", lister.identifier)
        .ok_or("no fetcher for the listed keys")?;
    let config = kye::cli::load_config(g).map_err(|e| e.to_string())?;
    let ctx = kye::Context::builder()
        .config(config)
        .build()
        .map_err(|e| e.to_string())?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    tokio.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        // Scoped as the runtime scopes it: the lister reads its source's declared values.
        let listing = tokio::spawn((lister.call)(
            ctx.for_fetcher(lister.function),
            kye::KeySender::new(tx, lister, fetcher.check),
        ));
        let (mut n, mut first) = (0u64, Vec::new());
        while let Some(listed) = rx.recv().await {
            n += 1;
            if first.len() < 5 {
                first.push(listed.key.to_string());
            }
        }
        match listing.await {
            Ok(Ok(())) => Ok((n, first)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
}

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

/// The demo, in three steps: list (the keys PokeAPI's list endpoint pages through, counted),
/// fetch (Pokémon 1..=151 with references followed), transform (a card per stored Pokémon,
/// computed after the fetch); then a few stored rows, where the data is and how to query it.
fn demo(g: &Global, offline: bool) -> ExitCode {
    let text = g.format == kye::cli::Format::Text && !g.quiet;
    if text {
        println!(
            "kye Pokémon demo {}: list, fetch, transform\n",
            if offline {
                "on the bundled fixtures (14 Pokémon; the other ids end `missing`)"
            } else {
                "on PokeAPI"
            }
        );
        println!("1. list: the keys `all_pokemon` finds on the list endpoint's pages");
        match list_keys(g) {
            Ok((n, first)) => println!(
                "   {n} Pokémon listed (ids {}{}); `fetch 'Pokemon'` fetches every one\n",
                first.join(", "),
                if n > first.len() as u64 { ", ..." } else { "" }
            ),
            Err(e) => println!("   the list endpoint failed: {e}\n"),
        }
        println!("2. fetch: `{DEMO_REQUEST}`, following their types and abilities");
    }
    let mut fetch = FetchArgs::new(DEMO_REQUEST);
    fetch.follow = Some(1);
    let (summary, transformed) = match fetch.execute_and_transform(g) {
        Ok(s) => s,
        Err(code) => return code,
    };
    kye::cli::print_fetch_summary(&summary, g);
    if text {
        println!("\n3. transform: a PokemonCard per stored Pokémon (`pokemon_card`), its weaknesses from its types");
        match &transformed {
            Some(Ok(t)) => kye::cli::print_transform_summary(t, g),
            Some(Err(e)) => println!("   the transformer failed: {e}"),
            None => println!("   nothing was stored, so nothing to transform"),
        }
        println!("\nThe first cards (`show PokemonCard --limit 5`):\n");
        ShowArgs::new("PokemonCard", Some(5)).run(g);
        println!("\nThe first stored Pokémon (`show Pokemon --limit 5`):\n");
        ShowArgs::new("Pokemon", Some(5)).run(g);
        print_query_hint(kye::cli::store_spec(g).ok());
        println!(
            "\nMore: `cargo run --example pokemon -- {}rejects` (quarantined records), `drift`, `runs`, `show PokemonType`, `transform` (cards of what changed).",
            if offline { "--offline " } else { "" }
        );
    }
    // The demo exists to show what happens, rejects included: a completed run is a success.
    match kye::cli::fetch_exit_code(&summary) {
        kye::cli::EXIT_DATA => ExitCode::from(kye::cli::EXIT_OK),
        code => ExitCode::from(code),
    }
}

/// How to look at the stored Pokémon with the store's own client: `sqlite3` for a file,
/// `psql` for PostgreSQL (connection without the password, then the store's schema).
fn print_query_hint(spec: Option<kye::store::StoreSpec>) {
    match spec {
        Some(kye::store::StoreSpec::Postgres(pg)) => {
            // For a double-quoted shell word.
            let sh = |s: &str| {
                s.chars().fold(String::new(), |mut out, c| {
                    if matches!(c, '"' | '\\' | '$' | '`') {
                        out.push('\\');
                    }
                    out.push(c);
                    out
                })
            };
            let schema = sh(&format!("\"{}\"", pg.schema.replace('"', "\"\"")));
            println!("\nThe data is in {pg}. Query it with psql:\n");
            println!(
                "  psql -h \"{}\" -p {} -U \"{}\" -d \"{}\" -c \"SET search_path TO {schema}\" -c \"SELECT p.id, p.name, string_agg(t.value, '/' ORDER BY t._kye_position) AS types, p.base_experience FROM \\\"Pokemon\\\" p JOIN \\\"Pokemon__types\\\" t USING (id) GROUP BY p.id, p.name, p.base_experience ORDER BY p.id LIMIT 10\"",
                sh(&pg.host),
                pg.port,
                sh(&pg.user),
                sh(&pg.database)
            );
        }
        spec => {
            let location = spec
                .map(|s| {
                    let p = s.path();
                    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
                })
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "kye.db".into());
            println!("\nThe data is in {location}. Query it with sqlite3:\n");
            println!(
                "  sqlite3 -header -column {location} \"SELECT p.id, p.name, group_concat(t.value, '/') AS types, p.base_experience FROM Pokemon p JOIN Pokemon__types t USING (id) GROUP BY p.id ORDER BY p.id LIMIT 10;\""
            );
        }
    }
}
