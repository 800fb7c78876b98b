kye::models!("../schema.kye");

#[kye::get(Pokemon)]
fn get_pokemon(id: i64) -> kye::Result<Pokemon> {
    unimplemented!("{id}")
}

fn main() {}
