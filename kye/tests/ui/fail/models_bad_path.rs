kye::models!("../no_such_schema.kye");

fn main() {}
