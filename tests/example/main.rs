//! The Pokémon example's tests, one binary (issue 12: each test binary is a separate link of
//! the whole dependency tree): its schema and fixtures (`fixtures`), its mapping with the
//! mapping's own unit tests (`mapping_checks`, `mapping::tests`), the example binary end to end
//! (`pokemon`) and killed mid-fetch (`kill`), and the example storing into PostgreSQL
//! (`pg_store`), the example serving its store over HTTP (`serve`) and its catalog pages
//! in chromium (`catalog`). `cargo test -p kye-workspace --test example`.
//!
//! The example's `mapping.rs` and `synthetic.rs` are compiled here as they are in the example,
//! beside the models of its schema (the mapping's tests name them at the crate root).

kye::models!("examples/pokemon/pokemon.kye");

#[path = "../../examples/pokemon/card.rs"]
mod card;
#[path = "../../examples/pokemon/mapping.rs"]
#[allow(dead_code)]
mod mapping;
#[path = "../../examples/pokemon/synthetic.rs"]
mod synthetic;

mod support;

mod card_checks;
mod catalog;
mod fixtures;
mod kill;
mod mapping_checks;
mod pg_store;
mod pokemon;
mod serve;
