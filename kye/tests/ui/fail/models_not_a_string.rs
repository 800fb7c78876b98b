kye::models!(schema.kye);

fn main() {}
