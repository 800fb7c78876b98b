kye::models!("../schema.kye");

// No keys per call.
#[kye::get(Pokemon.id, batch = 0)]
async fn none_at_a_time(ids: Vec<i64>) -> kye::Result<Vec<Pokemon>> {
    unimplemented!("{ids:?}")
}

// A batch fetcher of one key.
#[kye::get(Pokemon.id, batch = 50)]
async fn one_key(id: i64) -> kye::Result<Vec<Pokemon>> {
    unimplemented!("{id}")
}

// Many keys, no batch size.
#[kye::get(Pokemon.name)]
async fn no_batch(names: Vec<String>) -> kye::Result<Pokemon> {
    unimplemented!("{names:?}")
}

// One record for many keys.
#[kye::get(PokemonType.name, batch = 20)]
async fn one_record(names: Vec<String>) -> kye::Result<PokemonType> {
    unimplemented!("{names:?}")
}

// Keys of the wrong type for the index.
#[kye::get(Date(year, month, day), batch = 10)]
async fn days(days: Vec<(i64, String, i64)>) -> kye::Result<Vec<serde_json::Value>> {
    unimplemented!("{days:?}")
}

// Records of another model.
#[kye::get(Flag.enabled, batch = 2)]
async fn flags(flags: Vec<bool>) -> kye::Result<Vec<PokemonType>> {
    unimplemented!("{flags:?}")
}

fn main() {}
