// A context behind a type alias is recognised by the parameter's name.
kye::models!("../schema.kye");

type Ctx = kye::Context;

#[kye::get]
async fn get_type(name: String, ctx: &Ctx) -> kye::Result<PokemonType> {
    let _ = ctx;
    Ok(PokemonType { name })
}

fn main() {
    assert!(kye::registry().unwrap().fetcher("PokemonType", &["name"]).is_some());
}
