//! kye: a Rust SDK for data sources.
//!
//! Describe the models a source provides in a `.kye` schema, generate Rust types for them with
//! [`models!`], and annotate plain fetch functions with [`get`]. kye finds every fetcher linked
//! into the binary ([`registry`]), resolves requests such as `Pokemon.id in 1..=151` to the
//! right function ([`Request`]), calls it, validates and stores what comes back.
//!
//! ```
//! kye::models!("tests/schemas/pokemon.kye");
//!
//! /// Fetches one Pokémon by its national dex number.
//! #[kye::get(Pokemon.id)]
//! async fn get_pokemon(id: i64, _ctx: &kye::Context) -> kye::Result<Pokemon> {
//!     Ok(Pokemon { id, name: format!("pokemon-{id}"), weight: 60.0, types: vec![] })
//! }
//!
//! let registry = kye::registry().expect("no duplicate fetchers");
//! let resolved = registry.resolve_str("Pokemon.id in 1..=151").expect("a valid request");
//! assert_eq!(resolved.fetcher().function, "get_pokemon");
//! assert_eq!(resolved.keys().len(), 151);
//! // Typed builders read the same.
//! assert_eq!(Pokemon::by_id(25).to_string(), "Pokemon.id = 25");
//! ```
//!
//! # The linker pitfall
//!
//! Fetchers register themselves from whichever crate they are written in, but a crate that the
//! binary never names is dropped by the linker, fetchers and all. If your fetchers live in a
//! crate of their own, name it once in the binary:
//!
//! ```text
//! use my_sources as _;
//! ```
//!
//! [`Registry::warnings`] reports an empty registry and models
//! without fetchers, pointing at this fix.
//!
//! # Cargo features
//!
//! * `cli` (default): the command line every kye binary shares (`kye::cli`) and the standalone
//!   `kye` binary. A crate that only holds fetchers needs none of it: depend on kye with
//!   `default-features = false`, and let the binary enable it.
//! * `testing`: a loopback HTTP server and fixtures for testing fetchers (`kye::testing`);
//!   enable it where your tests are, e.g. `kye = { version = "...", features = ["testing"] }`
//!   under `[dev-dependencies]`.
//! * `server` (default): `serve`, `token`, `secret` and `audit` on the command line and
//!   `kye::Server` (the HTTP API over the store, with tokens, roles, sealed secrets and an
//!   audit log; `docs/serving.md`); the subcommands with `cli`. Builds axum and tower-http.
//! * `postgres`: the PostgreSQL store (`--db postgres://...`, `kye::store::PgStore`).

#![warn(missing_docs)]

pub use kye_lang as lang;

/// Registers a fetch function for a model identifier.
///
/// ```
/// kye::models!("tests/ui/schema.kye");
///
/// // Explicit: the model and the index edge(s) it is keyed by.
/// #[kye::get(Pokemon.id)]
/// async fn get_pokemon(id: i64, ctx: &kye::Context) -> kye::Result<Pokemon> {
///     # let _ = ctx;
///     Ok(Pokemon { id, name: format!("#{id}"), weight: 6.0, types: vec![] })
/// }
///
/// // Inferred: the model from the return type, the index from the parameter names.
/// #[kye::get]
/// fn get_pokemon_by_name(name: String) -> kye::Result<Option<Pokemon>> {
///     Ok(None)
/// }
///
/// // Composite index: one parameter per edge, or one tuple.
/// #[kye::get(Date(year, month, day))]
/// fn get_date(key: (i64, u8, u8)) -> kye::Result<serde_json::Value> {
///     Ok(serde_json::json!({ "year": key.0, "month": key.1, "day": key.2 }))
/// }
/// # fn main() { assert_eq!(kye::registry().unwrap().fetchers().len(), 3); }
/// ```
///
/// * sync or `async`; the `kye::Context` parameter (`&Context` or by value) is optional. Sync
///   functions run on tokio's blocking pool.
/// * returns `Result<T, E>` with `E: Into<kye::Error>` and `T` the generated model type,
///   `Option` of it (`None`: the source has no such key, recorded as missing), or
///   `serde_json::Value` (untyped: validated at run time only).
/// * key parameters: any integer type or `f64` for a `Number` index (values that do not fit the
///   type are rejected before the call), `String`/`Box<str>`/`Arc<str>` for a `String` index,
///   `bool` for a `Boolean` index.
/// * the function stays callable by its own name, unchanged; the first paragraph of its doc
///   comment is shown by `kye list`.
/// * `#[kye::get(Pokemon.id, crate = my::reexport::kye)]` when kye is re-exported elsewhere.
///
/// Mistakes are compile errors at your tokens: unknown model, an identifier that is not an
/// index, a parameter type that cannot hold the index's values, missing or surplus
/// parameters, generic functions, `self` receivers, `const fn`.
pub use kye_macros::get;

/// Registers a list function: it finds the keys of a model (through a list endpoint, page by
/// page) so that `fetch 'Pokemon'`, a bare model, fetches every key it finds with the model's
/// fetcher for that index, as the keys arrive.
///
/// ```no_run
/// kye::models!("tests/schemas/pokemon.kye");
///
/// #[kye::get(Pokemon.id)]
/// async fn pokemon(id: i64, ctx: &kye::Context) -> kye::Result<serde_json::Value> {
///     ctx.get_json_value(&format!("https://pokeapi.co/api/v2/pokemon/{id}/")).await
/// }
///
/// /// Every Pokémon PokeAPI lists.
/// #[kye::list(Pokemon.id)]
/// async fn all_pokemon(ctx: &kye::Context, keys: kye::Keys<i64>) -> kye::Result<()> {
///     let paging = kye::http::Paginator::next_url("next").items("results");
///     let mut pages = ctx.pages("https://pokeapi.co/api/v2/pokemon/?limit=100", &paging)?;
///     while let Some(page) = pages.next().await? {
///         for p in &page.items {
///             // ".../pokemon/25/" → 25
///             let url = p["url"].as_str().unwrap_or_default();
///             let id = url.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
///             keys.send(id.parse().map_err(|_| kye::Error::permanent(format!("no id in {url}")))?).await?;
///         }
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// * The function is `async fn(ctx: &kye::Context, keys: kye::Keys<T>) -> kye::Result<()>`;
///   `T` is a type the index's values fit (`i64`, `u32`, ... for a `Number` index, `String`
///   for a `String` one). `keys.send(k).await` hands one key to the run; it waits while the
///   run is busy, so memory stays flat for a million keys.
/// * A model has at most one list function, and a fetcher keyed by the same index must exist
///   (it fetches what the list finds). Both are checked when the registry is built.
/// * HTTP calls through `ctx` are retried like a fetcher's call; `ctx.pages` walks a list
///   endpoint ([`http::Paginator`]).
/// * If the function fails midway, the keys it sent are still fetched and stored, and the run
///   ends failed, naming the function: run the same request again to resume.
///
/// Mistakes are compile errors at your tokens: unknown model, an identifier that is not an
/// index, a key type the index's values do not fit, a function that is not `async`, wrong
/// parameters.
pub use kye_macros::list;

/// Registers a transformer: it computes records of one model (its output) from stored records
/// of others (its inputs), and its output is validated and stored like a fetched record.
///
/// ```no_run
/// kye::models!("tests/schemas/pokemon.kye", "tests/schemas/card.kye");
///
/// /// A card per stored Pokémon.
/// #[kye::transform(Card.id, from(Pokemon, PokemonType))]
/// async fn card(p: serde_json::Value, ctx: &kye::TransformContext) -> kye::Result<Card> {
///     // Other inputs are looked up through the context; each lookup is lineage.
///     let _normal: Option<PokemonType> = ctx.get::<PokemonType>("normal")?;
///     Ok(Card {
///         id: p["id"].as_i64().unwrap_or_default(),
///         name: p["name"].as_str().unwrap_or_default().to_string(),
///         heavy: p["weight"].as_f64().unwrap_or_default() > 1000.0,
///     })
/// }
/// # fn main() {}
/// ```
///
/// * `from(Primary, Other, ...)`: the function is called once per stored record of the
///   primary input (its first parameter: the primary model's generated type, or
///   `serde_json::Value` when the record holds references, which stay keys); other inputs
///   are read with `ctx.get::<Model>(key)`, and only declared inputs can be.
/// * It returns `kye::Result<Output>`, `kye::Result<Option<Output>>` (no output for this
///   input) or `kye::Result<serde_json::Value>`. Output is validated against the output
///   model: invalid output goes to rejects; valid output is stored with provenance
///   `transform <function>` and its lineage (the input keys and their content hashes).
/// * Incremental: an output is computed again only when one of the records it read changed,
///   appeared or is new (`kye transform`, `Runtime::transform`); after `kye fetch` the
///   transformers reading what it stored run unless `--no-transform`.
///
/// Mistakes are compile errors at your tokens: unknown model, an output identifier that is
/// not an index of the output model, a missing `from(...)`, an input named twice or equal to
/// the output, a first parameter that is not the primary input, a function that is not
/// `async`, wrong parameters.
pub use kye_macros::transform;

/// Declares a source: a package of data that says what it needs from its environment, next
/// to its fetchers. Its name, a one-line description (the doc comment), the crate's name and
/// version (from Cargo), the hosts it talks to, its configuration keys (type, default,
/// description) and secrets (how each is sent), and an optional probe for `sources check`.
///
/// ```no_run
/// kye::models!("tests/schemas/pokemon.kye");
///
/// kye::source! {
///     /// The Pokémon API behind a token.
///     pub dex {
///         hosts: ["api.dex.example"],
///         config: {
///             /// Where the API lives.
///             base_url: url = "https://api.dex.example/v1",
///             /// A region to restrict to.
///             region: string?,
///         },
///         secrets: {
///             /// The API token, sent as `Authorization: Bearer ...`.
///             DEX_TOKEN: bearer,
///         },
///         probe: "Pokemon.id = 1",
///     }
/// }
///
/// /// Fetches a Pokémon; kye sends the token to `api.dex.example`.
/// #[kye::get(Pokemon.id, source = dex)]
/// async fn pokemon(id: i64, ctx: &kye::Context) -> kye::Result<serde_json::Value> {
///     let base: String = ctx.config("base_url")?;          // declared keys only
///     ctx.get_json_value(&format!("{base}/pokemon/{id}")).await
/// }
/// # fn main() {}
/// ```
///
/// * Values come from the source's table in kye.toml (`[dex] base_url = "..."`, or
///   `KYE_DEX__BASE_URL`); secrets from the environment, the secrets file or `kye serve`'s
///   sealed secrets. A fetcher asking for a key or secret its source does not declare gets an
///   error naming the source.
/// * Types: `string`, `url`, `integer`, `number`, `boolean`; `?` marks an optional key
///   (`Option<T>` to the fetcher) or secret; `= literal` a default.
/// * Secrets are sent as `bearer`, `header("X-Api-Key")`, `query("appid")`,
///   `basic(username = "user")` (or `username = config_key`), or `fetcher` (not sent: read
///   with `ctx.secret`). kye sends them to the declared hosts only.
/// * `probe: "Model.edge = key"` fetches one known key (never stored);
///   `probe: get("{base_url}/health")` a URL. `kye sources check` runs it.
/// * `source = name` on `#[kye::get]`, `#[kye::list]` and `#[kye::transform]` says which
///   functions belong to it; an undeclared name is a compile error there. Records they store
///   carry `name@version` in their provenance.
///
/// Mistakes are compile errors at your tokens: a key or secret declared twice, an unknown
/// type or way of sending, a default of the wrong type, a host with a scheme, a probe naming
/// an undeclared key, a missing description, a name kye.toml uses for itself.
pub use kye_macros::source;

/// Generates one Rust type per model of one or more `.kye` files (paths relative to the
/// crate's `Cargo.toml`), implements [`Model`] for each and registers them with the runtime.
///
/// ```
/// kye::models!("tests/schemas/pokemon.kye");
/// // With a `crate = path` override when kye is reached through a re-export:
/// // kye::models!(crate = my::kye, "a.kye", "b.kye");
/// # fn main() {
/// let pikachu = Pokemon { id: 25, name: "pikachu".into(), weight: 60.0, types: vec![] };
/// assert_eq!(Pokemon::by_id(pikachu.id).to_string(), "Pokemon.id = 25");
/// # }
/// ```
///
/// * Schema errors are compile errors at the path, with the `.kye` file's line and column.
///   The crate rebuilds when a schema file changes.
/// * Each model becomes a struct deriving `Debug`, `Clone`, `PartialEq`, serde's `Serialize`
///   and `Deserialize`; edge names become snake_case fields (`#[serde(rename)]` when needed).
/// * Types: `String` → `String`, `Boolean` → `bool`, `Number` → `i64` for index edges (so
///   `Pokemon { id: 25, .. }` and `Pokemon.id = 25` read naturally) and `f64` otherwise;
///   another model → that generated type (boxed when recursive); a set of string literals
///   (`"red" | "blue"`) → a generated enum (named after the alias, or `ModelEdge`); other
///   constrained types → their base type (checked by the validator).
/// * Cardinality: `?` → `Option<T>`, `*`/`+` → `Vec<T>` (both default when absent).
/// * Typed request builders per index: `Pokemon::by_id(25)`, `Pokemon::by_name("pikachu")`,
///   `Date::by_year_month_day(2024, 1, 31)`.
pub use kye_macros::models;

/// The command line every kye binary shares (the `cli` feature, on by default).
///
/// ```no_run
/// // A binary of your data sources: every subcommand, with your fetchers in the registry;
/// // `--version` and `--help` show your crate's name, version and description, kye's after.
/// fn main() -> std::process::ExitCode {
///     kye::cli::run!()
/// }
/// ```
///
/// `kye::cli::run!()` is [`cli::App::new`] with the calling crate's `CARGO_PKG_NAME`,
/// `CARGO_PKG_VERSION` and `CARGO_PKG_DESCRIPTION`; [`cli::app!`] gives that [`cli::App`]
/// without running it. The function [`cli::run()`] is the standalone `kye` binary, which
/// calls itself kye.
#[cfg(feature = "cli")]
pub mod cli {
    pub use kye_runtime::cli::*;

    #[doc(inline)]
    pub use crate::__kye_cli_app as app;
    #[doc(inline)]
    pub use crate::__kye_cli_run as run;
}

/// The [`cli::App`] of the calling crate: its name, version and description.
#[cfg(feature = "cli")]
#[doc(hidden)]
#[macro_export]
macro_rules! __kye_cli_app {
    () => {
        $crate::cli::App::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            .about(env!("CARGO_PKG_DESCRIPTION"))
    };
}

/// Parses the arguments and runs the kye command line as the calling crate's binary (its
/// name, version and description in `--version` and `--help`); returns the exit code.
#[cfg(feature = "cli")]
#[doc(hidden)]
#[macro_export]
macro_rules! __kye_cli_run {
    () => {
        $crate::cli::app!().run()
    };
}

// Everything public in the runtime (its root re-exports, the modules `store`, `http`, `json`,
// `testing` with the `testing` feature, and the hidden `__private` that generated code names),
// re-exported whole: every type a public signature names is nameable at kye-runtime's root (it
// denies `unnameable_types`), so it is reachable from `kye`. `tests/facade/public_api.rs`
// names each one through `kye::` paths. kye's own `cli` module above shadows the runtime's.
#[doc(inline)]
pub use kye_runtime::*;

/// `docs/running.md`, compiled as doctests so its examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/running.md")]
pub struct RunningDocs;

/// `docs/fetchers.md`, compiled as doctests so its examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/fetchers.md")]
pub struct FetchersDocs;

/// `docs/language.md`, compiled as doctests so its examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/language.md")]
pub struct LanguageDocs;

/// `docs/validation.md`, compiled as doctests so its examples stay true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/validation.md")]
pub struct ValidationDocs;

/// `docs/store.md`: its blocks are kye, SQL and text today; a Rust block added later compiles.
#[cfg(doctest)]
#[doc = include_str!("../../docs/store.md")]
pub struct StoreDocs;
