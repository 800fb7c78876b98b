kye::models!("../schema.kye");

#[kye::get]
async fn get_type(name: String, ctx: &String) -> kye::Result<PokemonType> {
    let _ = ctx;
    Ok(PokemonType { name })
}

fn main() {}
