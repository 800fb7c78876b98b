// A context behind a type alias is recognised by the parameter's name.
kye::models!("tests/ui/schema.kye");

type Ctx = kye::Context;

#[kye::get]
async fn get_type(name: String, ctx: &Ctx) -> kye::Result<PokemonType> {
    let _ = ctx;
    Ok(PokemonType { name })
}

#[test]
fn compiles_and_registers() {
    assert!(crate::registry_of(module_path!())
        .unwrap()
        .fetcher("PokemonType", &["name"])
        .is_some());
}
