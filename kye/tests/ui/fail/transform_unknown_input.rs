kye::models!("../schema.kye");

// An input model that does not exist.
#[kye::transform(PokemonType.name, from(Pokmon))]
async fn unknown_input(p: serde_json::Value, ctx: &kye::TransformContext) -> kye::Result<PokemonType> {
    let _ = (p, ctx);
    unimplemented!()
}

fn main() {}
