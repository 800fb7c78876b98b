// `crate = path` when kye is reached through another path (here a re-export).
mod reexport {
    pub use ::kye;
}

reexport::kye::models!(crate = reexport::kye, "tests/ui/schema.kye");

#[reexport::kye::get(Flag.enabled, crate = reexport::kye)]
fn get_flag(enabled: bool) -> reexport::kye::Result<Flag> {
    Ok(Flag {
        enabled,
        label: "on".into(),
    })
}

#[test]
fn compiles_and_registers() {
    assert!(crate::registry_of(module_path!())
        .unwrap()
        .fetcher("Flag", &["enabled"])
        .is_some());
}
