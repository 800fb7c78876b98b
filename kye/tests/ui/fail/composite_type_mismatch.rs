kye::models!("../schema.kye");

#[kye::get]
fn get_date(year: i64, month: &'static str, day: i64) -> kye::Result<Date> {
    unimplemented!("{year} {month} {day}")
}

fn main() {}
