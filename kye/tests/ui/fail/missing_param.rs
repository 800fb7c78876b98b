kye::models!("../schema.kye");

#[kye::get(Date(year, month, day))]
fn get_date(year: i64, month: i64) -> kye::Result<Date> {
    unimplemented!("{year} {month}")
}

fn main() {}
