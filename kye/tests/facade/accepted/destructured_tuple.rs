// Composite index as one destructured tuple, inferred from the pattern's names.
kye::models!("tests/ui/schema.kye");

#[kye::get]
fn get_date((year, month, day): (i64, i64, i64), _ctx: &kye::Context) -> kye::Result<Date> {
    Ok(Date {
        year,
        month,
        day,
        holiday: None,
    })
}

#[test]
fn compiles_and_registers() {
    assert!(crate::registry_of(module_path!())
        .unwrap()
        .fetcher("Date", &["year", "month", "day"])
        .is_some());
}
