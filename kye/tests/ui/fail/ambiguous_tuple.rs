kye::models!("../schema.kye");

#[kye::get]
fn get_date(key: (i64, i64, i64)) -> kye::Result<Date> {
    unimplemented!("{key:?}")
}

fn main() {}
