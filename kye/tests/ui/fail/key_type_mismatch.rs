kye::models!("../schema.kye");

#[kye::get(Pokemon.id)]
async fn get_pokemon(id: String) -> kye::Result<Pokemon> {
    unimplemented!("{id}")
}

fn main() {}
