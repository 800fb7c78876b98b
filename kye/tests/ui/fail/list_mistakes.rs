kye::models!("../schema.kye");

#[kye::get(Pokemon.id)]
async fn get_pokemon(id: i64) -> kye::Result<Pokemon> {
    unimplemented!("{id}")
}

// A String key for a Number index.
#[kye::list(Pokemon.id)]
async fn all_pokemon(ctx: &kye::Context, keys: kye::Keys<String>) -> kye::Result<()> {
    let _ = ctx;
    keys.send("25".to_string()).await
}

// Not async, and no `Keys` parameter.
#[kye::list(Pokemon.name)]
fn by_name(ctx: &kye::Context) -> kye::Result<()> {
    let _ = ctx;
    Ok(())
}

fn main() {}
