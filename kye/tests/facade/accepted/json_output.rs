// Untyped output: `serde_json::Value` needs the explicit form (the model cannot be inferred).
kye::models!("tests/ui/schema.kye");

#[kye::get(Pokemon.id)]
fn get_raw(id: u32, ctx: kye::Context) -> kye::Result<serde_json::Value> {
    let _ = ctx;
    Ok(serde_json::json!({ "id": id, "name": "raw" }))
}

#[test]
fn compiles_and_registers() {
    let f = crate::registry_of(module_path!())
        .unwrap()
        .fetcher("Pokemon", &["id"])
        .unwrap();
    assert_eq!(f.output.as_str(), "json");
    // u32 cannot hold -1: rejected before the call.
    assert!(f.check_key(&kye::Key::single(-1i64)).is_err());
    assert!(f.check_key(&kye::Key::single(7i64)).is_ok());
}
