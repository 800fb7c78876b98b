// Every mistake of one fetcher is reported in one compile, not one per fix.
kye::models!("../schema.kye");

#[kye::get(Pokemon.id)]
async fn get_pokemon<T>(id: i64, ctx: &mut kye::Context) -> kye::Result<Pokemon> {
    let _ = ctx;
    unimplemented!("{id}")
}

fn main() {}
