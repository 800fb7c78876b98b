// A schema that does not compile is the only error: the models it still defines get stand-in
// types, so fetchers and other uses of them do not fail too.
kye::models!("../schema.kye", "../broken.kye");

#[kye::get(Pokemon.id)]
async fn get_pokemon(id: i64) -> kye::Result<Pokemon> {
    unimplemented!("{id}")
}

#[kye::get]
fn get_date((year, month, day): (i64, u8, u8)) -> kye::Result<Option<Date>> {
    unimplemented!("{year} {month} {day}")
}

fn first(list: Vec<Pokemon>) -> Option<Pokemon> {
    list.into_iter().next()
}

fn main() {
    let _ = first(Vec::new());
}
