kye::models!("../schema.kye");

#[kye::get(Pokemon.id)]
fn get_pokemon<T: Into<i64>>(id: T) -> kye::Result<Pokemon> {
    unimplemented!("{}", id.into())
}

fn main() {}
