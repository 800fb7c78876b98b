// Composite index, one parameter per edge, inferred from the parameter names.
kye::models!("tests/ui/schema.kye");

#[kye::get]
fn get_date(year: i64, month: u8, day: u8) -> kye::Result<Date> {
    Ok(Date {
        year,
        month: month.into(),
        day: day.into(),
        holiday: None,
    })
}

#[test]
fn compiles_and_registers() {
    let f = crate::registry_of(module_path!())
        .unwrap()
        .fetcher("Date", &["year", "month", "day"])
        .unwrap();
    let key = kye::Key::new(vec![2024i64.into(), 1i64.into(), 31i64.into()]);
    let out = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(f.call(&key, kye::Context::new()));
    assert_eq!(out.unwrap().unwrap()["day"], 31);
    assert_eq!(
        Date::by_year_month_day(2024, 1, 31).to_string(),
        "Date(year, month, day) = (2024, 1, 31)"
    );
}
