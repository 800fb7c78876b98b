kye::models!("../schema.kye");

#[kye::get(Flag.enabled)]
const fn get_flag(enabled: bool) -> kye::Result<Flag> {
    unimplemented!()
}

fn main() {}
