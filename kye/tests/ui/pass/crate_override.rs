// `crate = path` when kye is reached through another path (here a re-export).
mod reexport {
    pub use ::kye;
}

reexport::kye::models!(crate = reexport::kye, "../schema.kye");

#[reexport::kye::get(Flag.enabled, crate = reexport::kye)]
fn get_flag(enabled: bool) -> reexport::kye::Result<Flag> {
    Ok(Flag { enabled, label: "on".into() })
}

fn main() {
    assert!(kye::registry().unwrap().fetcher("Flag", &["enabled"]).is_some());
}
