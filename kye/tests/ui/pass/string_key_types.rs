// String indexes take String, Box<str> or Arc<str>; `_`-prefixed names still infer.
use std::sync::Arc;

kye::models!("../schema.kye");

#[kye::get]
fn get_type(_name: Arc<str>) -> kye::Result<Option<PokemonType>> {
    Ok(None)
}

#[kye::get(Pokemon.name)]
fn get_pokemon(name: Box<str>) -> kye::Result<Option<Pokemon>> {
    let _ = name;
    Ok(None)
}

fn main() {
    let r = kye::registry().unwrap();
    assert!(r.fetcher("PokemonType", &["name"]).is_some());
    assert!(r.fetcher("Pokemon", &["name"]).is_some());
}
