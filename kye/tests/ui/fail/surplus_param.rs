kye::models!("../schema.kye");

#[kye::get(Pokemon.id)]
fn get_pokemon(id: i64, page: u32, ctx: &kye::Context) -> kye::Result<Pokemon> {
    unimplemented!("{id} {page} {ctx:?}")
}

fn main() {}
