// Inferred form: the model from the return type, the index from the parameter name; sync, no ctx.
kye::models!("tests/ui/schema.kye");

#[kye::get]
fn get_pokemon_by_name(name: String) -> kye::Result<Pokemon> {
    Ok(Pokemon {
        id: 25,
        name,
        weight: 6.0,
        types: vec![],
    })
}

#[test]
fn compiles_and_registers() {
    let registry = crate::registry_of(module_path!()).unwrap();
    let f = registry.fetcher("Pokemon", &["name"]).unwrap();
    assert!(!f.is_async);
    let out = futures_block_on(f.call(&kye::Key::single("pikachu"), kye::Context::new()));
    assert_eq!(out.unwrap().unwrap()["id"], 25);
}

fn futures_block_on(f: kye::FetchFuture) -> kye::Result<Option<serde_json::Value>> {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}
