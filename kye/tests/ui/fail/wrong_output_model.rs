kye::models!("../schema.kye");

#[kye::get(Pokemon.name)]
async fn get_pokemon(name: String) -> kye::Result<PokemonType> {
    Ok(PokemonType { name })
}

fn main() {}
