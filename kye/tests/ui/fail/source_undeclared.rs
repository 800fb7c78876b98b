kye::models!("../schema.kye");

kye::source! {
    /// PokeAPI.
    pokeapi { hosts: ["pokeapi.co"] }
}

// A fetcher naming a source no `kye::source!` declares: rustc's error at the name.
#[kye::get(Pokemon.id, source = pokeapy)]
async fn get_pokemon(id: i64) -> kye::Result<Pokemon> {
    unimplemented!("{id}")
}

fn main() {}
