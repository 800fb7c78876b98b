kye::models!("../schema.kye");

struct Client;

impl Client {
    #[kye::get(Pokemon.id)]
    async fn get_pokemon(&self, id: i64) -> kye::Result<Pokemon> {
        unimplemented!("{id}")
    }
}

fn main() {
    let _ = Client;
}
