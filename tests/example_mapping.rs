//! The Pokémon example's mapping (`examples/pokemon/mapping.rs`) with its unit tests, compiled
//! here so `cargo test` runs them while building the example binary only once.

kye::models!("examples/pokemon/pokemon.kye");

#[path = "../examples/pokemon/mapping.rs"]
#[allow(dead_code)]
mod mapping;
