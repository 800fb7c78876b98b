kye::models!("../schema.kye");

#[kye::get(Pokemon.id)]
fn get_pokemon(id: i64) {
    let _ = id;
}

fn main() {}
