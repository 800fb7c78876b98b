kye::models!("../schema.kye");

#[kye::get]
async fn get_pokemon(pokemon_id: i64) -> kye::Result<Pokemon> {
    unimplemented!("{pokemon_id}")
}

fn main() {}
