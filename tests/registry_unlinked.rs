//! The linker pitfall: `kye-user-sources` is a dependency of this test binary, but nothing here
//! names it, so the linker drops it and its fetchers with it. The registry must say so, and
//! point at the fix (`use my_sources as _;`). Compare `tests/registry.rs`, which names the crate.

#[test]
fn an_unnamed_crate_of_fetchers_is_dropped_and_the_registry_says_why() {
    let registry = kye::registry().expect("registry builds");
    assert_eq!(registry.fetchers().len(), 0);
    assert!(registry.fetcher("Book", &["isbn"]).is_none());
    let warnings: Vec<String> = registry.warnings().iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("no fetchers are registered in this binary."),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("`use my_sources as _;`"),
        "{}",
        warnings[0]
    );
    // A request then explains the same.
    let err = registry.resolve_str("Book.isbn = \"978-0\"").unwrap_err();
    assert_eq!(err.message(), "unknown model `Book`");
    assert_eq!(
        err.help_text(),
        Some("no models are registered in this binary: declare them with `kye::models!`; if they live in another crate, name that crate once (`use my_sources as _;`) so the linker keeps it")
    );
}
