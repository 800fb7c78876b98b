kye::models!("../schema.kye");

kye::source! {
    /// PokeAPI.
    pokeapi { hosts: ["pokeapi.co"] }
}

// `source` given twice.
#[kye::get(Pokemon.name, source = pokeapi, source = pokeapi)]
async fn by_name(name: String) -> kye::Result<Pokemon> {
    unimplemented!("{name}")
}

fn main() {}
