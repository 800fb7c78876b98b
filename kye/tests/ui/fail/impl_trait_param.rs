kye::models!("../schema.kye");

#[kye::get(Pokemon.name)]
fn get_pokemon(name: impl AsRef<str>) -> kye::Result<Pokemon> {
    unimplemented!("{}", name.as_ref())
}

fn main() {}
