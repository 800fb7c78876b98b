// String indexes take String, Box<str> or Arc<str>; `_`-prefixed names still infer.
use std::sync::Arc;

kye::models!("tests/ui/schema.kye");

#[kye::get]
fn get_type(_name: Arc<str>) -> kye::Result<Option<PokemonType>> {
    Ok(None)
}

#[kye::get(Pokemon.name)]
#[allow(clippy::boxed_local)] // the point: a `Box<str>` key parameter is accepted
fn get_pokemon(name: Box<str>) -> kye::Result<Option<Pokemon>> {
    let _ = name;
    Ok(None)
}

#[test]
fn compiles_and_registers() {
    let r = crate::registry_of(module_path!()).unwrap();
    assert!(r.fetcher("PokemonType", &["name"]).is_some());
    assert!(r.fetcher("Pokemon", &["name"]).is_some());
}
