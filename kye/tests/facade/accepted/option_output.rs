// `Option<Model>`: None means the source has no such key. Any error type convertible into kye::Error.
kye::models!("tests/ui/schema.kye");

#[derive(Debug)]
struct MyError;

impl From<MyError> for kye::Error {
    fn from(_: MyError) -> Self {
        kye::Error::permanent("mine")
    }
}

#[kye::get]
async fn get_type(name: String) -> Result<Option<PokemonType>, MyError> {
    match name.as_str() {
        "fire" => Ok(Some(PokemonType { name })),
        "boom" => Err(MyError),
        _ => Ok(None),
    }
}

#[test]
fn compiles_and_registers() {
    let f = crate::registry_of(module_path!())
        .unwrap()
        .fetcher("PokemonType", &["name"])
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let call = |k: &str| rt.block_on(f.call(&kye::Key::single(k), kye::Context::new()));
    assert!(call("fire").unwrap().is_some());
    assert!(call("water").unwrap().is_none());
    assert_eq!(call("boom").unwrap_err().message(), "mine");
    assert_eq!(f.output.as_str(), "optional");
}
