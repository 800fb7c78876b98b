kye::models!("../schema.kye", "../broken.kye");

fn main() {}
