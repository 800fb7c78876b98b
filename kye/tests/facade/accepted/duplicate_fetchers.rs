// Two fetchers for the same identifier compile (they may live in different crates), but the
// registry refuses to build and names both source locations.
kye::models!("tests/ui/schema.kye");

#[kye::get(Pokemon.id)]
fn get_pokemon(id: i64) -> kye::Result<Option<Pokemon>> {
    let _ = id;
    Ok(None)
}

#[kye::get]
async fn fetch_pokemon(id: i64) -> kye::Result<Option<Pokemon>> {
    let _ = id;
    Ok(None)
}

#[test]
fn compiles_and_registers() {
    let err = crate::registry_of(module_path!()).unwrap_err().to_string();
    assert!(
        err.starts_with("two fetchers are registered for `Pokemon.id`: `"),
        "{err}"
    );
    assert!(
        err.contains("tests/facade/accepted/duplicate_fetchers.rs:6"),
        "{err}"
    );
    assert!(
        err.contains("tests/facade/accepted/duplicate_fetchers.rs:12"),
        "{err}"
    );
}
