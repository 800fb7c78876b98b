// Batch fetchers (`batch = N`): typed records, JSON records, a composite index as a `Vec` of
// tuples, sync and `crate = path`; each registers its size and calls with many keys.
mod forms {
    kye::models!("tests/ui/schema.kye");

    #[kye::get(Pokemon.id, batch = 3)]
    pub async fn pokemon_batch(ids: Vec<u16>, _ctx: &kye::Context) -> kye::Result<Vec<Pokemon>> {
        Ok(ids
            .into_iter()
            .map(|id| Pokemon {
                id: id.into(),
                name: format!("#{id}"),
                weight: 1.0,
                types: vec![],
            })
            .collect())
    }

    #[kye::get(PokemonType.name, batch = 100, crate = ::kye)]
    pub async fn types(names: Vec<String>) -> kye::Result<Vec<serde_json::Value>> {
        Ok(names
            .into_iter()
            .map(|name| serde_json::json!({ "name": name }))
            .collect())
    }

    #[kye::get(Date(year, month, day), batch = 31)]
    pub fn days(days: Vec<(i64, u8, u8)>, ctx: kye::Context) -> kye::Result<Vec<Date>> {
        let _ = ctx;
        Ok(days
            .into_iter()
            .map(|(year, month, day)| Date {
                year,
                month: month.into(),
                day: day.into(),
                holiday: None,
            })
            .collect())
    }
}

#[test]
fn compiles_registers_and_calls_with_many_keys() {
    let registry = crate::registry_of(module_path!()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let pokemon = registry.fetcher("Pokemon", &["id"]).unwrap();
    assert_eq!(pokemon.batch_size(), Some(3));
    assert_eq!(pokemon.output.as_str(), "record");
    let keys = [kye::Key::single(1i64), kye::Key::single(2i64)];
    let out = rt
        .block_on(pokemon.call_batch(&keys, kye::Context::new()).unwrap())
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["name"], "#2");
    // A key that does not fit `u16` fails the call before the function runs.
    let err = rt
        .block_on(
            pokemon
                .call_batch(&[kye::Key::single(70_000i64)], kye::Context::new())
                .unwrap(),
        )
        .unwrap_err();
    assert!(err.message().contains("u16"), "{err}");
    assert!(pokemon.check_key(&kye::Key::single(70_000i64)).is_err());
    // One key through `call`: a batch of one.
    let one = rt
        .block_on(pokemon.call(&kye::Key::single(7i64), kye::Context::new()))
        .unwrap();
    assert_eq!(one.unwrap()["id"], 7);

    let types = registry.fetcher("PokemonType", &["name"]).unwrap();
    assert_eq!(types.batch_size(), Some(100));
    assert_eq!(types.output.as_str(), "json");

    let days = registry.fetcher("Date", &["year", "month", "day"]).unwrap();
    assert_eq!(days.batch_size(), Some(31));
    assert!(!days.is_async);
    let key = kye::Key::new(vec![2024i64.into(), 2i64.into(), 29i64.into()]);
    let out = rt
        .block_on(days.call_batch(&[key], kye::Context::new()).unwrap())
        .unwrap();
    assert_eq!(out[0]["day"], 29);
    let _ = (forms::pokemon_batch, forms::types, forms::days);
}
