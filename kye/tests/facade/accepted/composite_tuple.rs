// Composite index as one tuple: explicit (plain name) and inferred (destructured) forms.
mod explicit {
    kye::models!("tests/ui/schema.kye");

    #[kye::get(Date(year, month, day))]
    pub async fn get_date(key: (i64, i64, i64)) -> kye::Result<Option<Date>> {
        let (year, month, day) = key;
        Ok(Some(Date {
            year,
            month,
            day,
            holiday: Some("new year".into()),
        }))
    }
}

#[test]
fn compiles_and_registers() {
    let f = crate::registry_of(module_path!())
        .unwrap()
        .fetcher("Date", &["year", "month", "day"])
        .unwrap();
    let key = kye::Key::new(vec![2024i64.into(), 1i64.into(), 1i64.into()]);
    let out = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(f.call(&key, kye::Context::new()));
    assert_eq!(out.unwrap().unwrap()["holiday"], "new year");
    let _ = explicit::get_date;
}
