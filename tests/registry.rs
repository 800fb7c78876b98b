//! Cross-crate registration: the fetchers and models of `tests/user-sources` (a separate crate
//! of the workspace, like a user's crate of sources) reach this binary's registry, and requests
//! resolve to them and run through the type-erased entry point.

// The fix for the linker pitfall: name the crate of fetchers once.
use kye_user_sources as _;

use kye::{Key, KeyValue};

fn registry() -> &'static kye::Registry {
    kye::registry().expect("registry builds")
}

#[test]
fn models_and_fetchers_from_another_crate_are_registered() {
    let r = registry();
    let models: Vec<&str> = r.models().map(|m| m.name()).collect();
    assert_eq!(models, ["Author", "Book", "Opening", "Shelf"]);
    let fetchers: Vec<String> = r
        .fetchers()
        .iter()
        .map(|f| format!("{} {} {}", f.identifier_text(), f.function, f.crate_name()))
        .collect();
    assert_eq!(
        fetchers,
        [
            "Author.name author kye_user_sources",
            "Book.id book_by_id kye_user_sources",
            "Book.isbn book_by_isbn kye_user_sources",
            "Opening(year, month, day) opening kye_user_sources",
        ]
    );
    let isbn = r.fetcher("Book", &["isbn"]).unwrap();
    assert!(isbn.is_async);
    assert_eq!(isbn.doc, "Looks a book up by ISBN.");
    assert!(
        isbn.file.ends_with("tests/user-sources/src/lib.rs"),
        "{}",
        isbn.file
    );
    assert_eq!(isbn.output.as_str(), "optional");
}

#[test]
fn a_model_without_fetcher_is_reported() {
    let warnings: Vec<String> = registry()
        .warnings()
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("model `Shelf` (catalog.kye:"),
        "{}",
        warnings[0]
    );
}

#[tokio::test]
async fn requests_resolve_and_call_the_other_crates_functions() {
    let r = registry();
    let resolved = r.resolve_str("Book.isbn = \"978-0\"").unwrap();
    let f = resolved.fetcher();
    let key = resolved.keys().iter().next().unwrap();
    let record = f.call(&key, kye::Context::new()).await.unwrap().unwrap();
    assert_eq!(record["format"], "paperback");
    assert_eq!(record["authors"][0]["name"], "Steve Klabnik");
    // The record is valid for its own schema.
    let report = kye::lang::validate::validate_record(resolved.model().schema(), "Book", &record);
    assert!(report.is_valid(), "{:?}", report.errors);

    // Missing keys are Ok(None), errors keep their class.
    let none = f
        .call(&Key::single("nope"), kye::Context::new())
        .await
        .unwrap();
    assert_eq!(none, None);
    let by_id = r.fetcher("Book", &["id"]).unwrap();
    let err = by_id
        .call(&Key::single(13i64), kye::Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.class(), kye::ErrorClass::Retryable);
    // A key that does not fit the parameter (u32) fails without calling the function.
    let err = by_id
        .call(&Key::single(-1i64), kye::Context::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "key -1 does not fit the fetcher's parameter type `u32`"
    );
    assert_eq!(
        r.resolve_str("Book.id = -1").unwrap_err().message(),
        "key -1 cannot be given to `book_by_id`: key -1 does not fit the fetcher's parameter type `u32`"
    );

    let day = r.resolve_str("Opening = (2024, 12, 24)").unwrap();
    let key = day.keys().iter().next().unwrap();
    assert_eq!(
        key.values(),
        [KeyValue::Int(2024), KeyValue::Int(12), KeyValue::Int(24)]
    );
    let out = day
        .fetcher()
        .call(&key, kye::Context::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out["hours"], "9-17");
}

#[test]
fn listing_covers_every_crate() {
    let listing = kye::Listing::new(registry());
    let json: serde_json::Value = serde_json::from_str(&listing.to_json()).unwrap();
    let first = &json["fetchers"][0];
    assert_eq!(first["model"], "Author");
    assert_eq!(first["identifier"], serde_json::json!(["name"]));
    assert_eq!(first["function"], "author");
    assert_eq!(first["crate"], "kye_user_sources");
    assert_eq!(first["async"], false);
    assert_eq!(first["doc"], "An author by name.");
    assert!(first["location"]
        .as_str()
        .unwrap()
        .starts_with("tests/user-sources/src/lib.rs:"));
    assert_eq!(
        json["models"][1]["doc"],
        "A book in a small library catalog."
    );
}

#[test]
fn a_users_binary_calls_itself_by_its_own_name_with_kye_after() {
    // `kye::cli::run!()` runs this App: the calling crate's name, version and description.
    let app = kye::cli::app!();
    assert_eq!(app.name(), "kye-workspace");
    let mut cmd = app.command();
    assert_eq!(
        cmd.render_version().trim(),
        format!(
            "kye-workspace {} (kye {})",
            env!("CARGO_PKG_VERSION"),
            kye::cli::KYE_VERSION
        )
    );
    let help = cmd.render_help().to_string();
    // This crate has no description: --help says what the binary is, not what kye-runtime is.
    assert!(
        help.starts_with("kye-workspace: a data source built with kye\n"),
        "{help}"
    );
    assert!(!help.contains("kye runtime"), "{help}");
}
