kye::models!("../schema.kye");

#[kye::get(Pokemon.weight)]
async fn get_pokemon(weight: i64) -> kye::Result<Pokemon> {
    unimplemented!("{weight}")
}

fn main() {}
