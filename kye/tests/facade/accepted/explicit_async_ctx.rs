// The canonical form: explicit identifier, async, with the context.
kye::models!("tests/ui/schema.kye");

/// Fetches one Pokémon by its national dex number.
#[kye::get(Pokemon.id)]
async fn get_pokemon(id: i64, ctx: &kye::Context) -> kye::Result<Pokemon> {
    let _ = ctx;
    Ok(Pokemon {
        id,
        name: format!("#{id}"),
        weight: 6.9,
        types: vec![],
    })
}

#[test]
fn compiles_and_registers() {
    let registry = crate::registry_of(module_path!()).unwrap();
    let f = registry.fetcher("Pokemon", &["id"]).unwrap();
    assert_eq!(f.function, "get_pokemon");
    assert!(f.is_async);
    assert_eq!(f.doc, "Fetches one Pokémon by its national dex number.");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt
        .block_on(f.call(&kye::Key::single(25i64), kye::Context::new()))
        .unwrap();
    assert_eq!(out.unwrap()["name"], "#25");
    // Still callable by its own name.
    let direct = rt.block_on(get_pokemon(1, &kye::Context::new())).unwrap();
    assert_eq!(direct.id, 1);
}
