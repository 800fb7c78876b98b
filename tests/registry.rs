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
    assert_eq!(
        models,
        ["Author", "Book", "Opening", "Reader", "Shelf", "Visits"]
    );
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
            "Reader.id readers kye_user_sources",
            "Visits(year, day) visits kye_user_sources",
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

// ---------------------------------------------------------------------------------------------
// A list function from another crate (`all_authors`, `#[kye::list(Author.name)]`): `fetch
// 'Author'` fetches every author it finds, page by page, against a loopback catalog.

mod listed {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use kye::testing::{Fault, Route, Routes, TestServer};
    use kye::{Config, Runtime};
    use serde_json::json;

    const AUTHORS: usize = 47;
    const PAGE: usize = 10;

    /// `/authors?page=N`: ten names a page, then an empty page; page `fail_page` always 500.
    fn catalog(fail_page: Option<usize>, requests: Arc<AtomicU32>) -> Routes {
        catalog_with(fail_page, Fault::Status(500), requests)
    }

    /// The same with another fault on `fault_page`.
    fn catalog_with(fault_page: Option<usize>, fault: Fault, requests: Arc<AtomicU32>) -> Routes {
        let fault = std::sync::Mutex::new(fault);
        catalog_of_with(
            fault_page,
            fault,
            requests,
            |i| json!({ "name": format!("author {i:02}") }),
        )
    }

    fn catalog_of(
        fail_page: Option<usize>,
        requests: Arc<AtomicU32>,
        entry: impl Fn(usize) -> serde_json::Value + Send + Sync + 'static,
    ) -> Routes {
        catalog_of_with(
            fail_page,
            std::sync::Mutex::new(Fault::Status(500)),
            requests,
            entry,
        )
    }

    /// The catalog, each entry made by `entry`, page `fail_page` always answering `fault`.
    fn catalog_of_with(
        fail_page: Option<usize>,
        fault: std::sync::Mutex<Fault>,
        requests: Arc<AtomicU32>,
        entry: impl Fn(usize) -> serde_json::Value + Send + Sync + 'static,
    ) -> Routes {
        Routes::new().generate_with_query("/authors", move |_, q| {
            requests.fetch_add(1, Ordering::SeqCst);
            let page: usize = q.strip_prefix("page=")?.parse().ok()?;
            let names: Vec<_> = (((page - 1) * PAGE)..(page * PAGE).min(AUTHORS))
                .map(&entry)
                .collect();
            let route = Route::json(json!({ "authors": names }).to_string());
            Some(if Some(page) == fail_page {
                route.always(fault.lock().unwrap().clone())
            } else {
                route
            })
        })
    }

    fn runtime(base: &str, db: &std::path::Path) -> Runtime {
        let config = Config::from_toml_str(
            &format!(
                "[catalog]\nbase_url = \"{base}\"\n[run]\nmax_attempts = 2\nbackoff_base = \"5ms\"\nbackoff_max = \"5ms\"\n"
            ),
            None,
        )
        .unwrap();
        Runtime::builder()
            .config(config)
            .env(Vec::new())
            .store(format!("sqlite:{}", db.display()))
            .handle_ctrl_c(false)
            .build()
            .unwrap()
    }

    #[test]
    fn the_lister_is_registered_with_its_fetcher() {
        let r = super::registry();
        let listers: Vec<String> = r
            .listers()
            .iter()
            .map(|l| format!("{} {}", l.identifier_text(), l.function))
            .collect();
        assert_eq!(
            listers,
            [
                "Author.name all_authors",
                "Book.id new_books",
                "Reader.id all_readers"
            ]
        );
        assert_eq!(
            r.lister("Author").unwrap().doc,
            "Every author the catalog lists, page by page (`catalog.base_url`/authors?page=N)."
        );
        // `kye list` shows it (JSON, text and the Markdown of REGISTRY.md).
        let listing = kye::Listing::new(r);
        let json: serde_json::Value = serde_json::from_str(&listing.to_json()).unwrap();
        assert_eq!(json["listers"][0]["function"], "all_authors");
        assert_eq!(json["listers"][0]["identifier"], json!(["name"]));
        assert_eq!(json["listers"][0]["crate"], "kye_user_sources");
        assert!(
            listing.to_text().contains("\nListers\n"),
            "{}",
            listing.to_text()
        );
        assert!(listing
            .to_markdown()
            .contains("| `Author.name` | `all_authors` |"));
        // A bare model without a lister says what to do instead.
        let err = r.resolve_str("Opening").unwrap_err();
        assert_eq!(err.kind(), kye::RequestErrorKind::NoLister);
        assert!(err.to_string().contains("#[kye::list(Opening"), "{err}");
    }

    #[tokio::test]
    async fn a_bare_model_fetches_every_key_its_lister_finds() {
        let requests = Arc::new(AtomicU32::new(0));
        let server = TestServer::start(catalog(None, requests.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
        let summary = rt.fetch("Author").await.unwrap();
        assert_eq!(summary.status, kye::RunStatus::Completed, "{summary}");
        assert_eq!(summary.counts.stored, AUTHORS as u64, "{summary}");
        assert_eq!(summary.requested, AUTHORS as u64);
        // Five pages of names and the empty sixth.
        assert_eq!(requests.load(Ordering::SeqCst), 6);
        let names: Vec<String> = rt
            .with_store(|s| s.records(&kye::store::RecordQuery::new("Author")))
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), AUTHORS);
        assert_eq!(names[0], "author 00");
        // Keys without records on the page were fetched by the fetcher, and say so.
        let mut query = kye::store::RecordQuery::new("Author");
        query.provenance = true;
        let authors = rt.with_store(|s| s.records(&query)).unwrap();
        assert_eq!(authors[0]["_kye"]["fetcher"], "kye_user_sources::author");
        assert_eq!(names[AUTHORS - 1], "author 46");
    }

    #[tokio::test]
    async fn a_lister_failing_midway_keeps_what_it_found_and_the_run_resumes_from_its_page() {
        let requests = Arc::new(AtomicU32::new(0));
        let server = TestServer::start(catalog(Some(3), requests.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kye.db");
        let rt = runtime(server.base_url(), &db);
        let err = rt.fetch("Author").await.unwrap_err().to_string();
        assert!(err.contains("all_authors"), "{err}");
        assert!(err.contains("after listing 20 keys"), "{err}");
        assert!(err.contains("page 3 of the list"), "{err}");
        let runs = rt.with_store(|s| s.runs(None)).unwrap();
        assert_eq!(runs[0].status, kye::RunStatus::Failed);
        assert_eq!(runs[0].counts.stored, 20);
        // The cursor saved after page 2, with its 20 authors' outcomes: page 3 comes next.
        let cursor = rt
            .with_store(|s| s.list_cursor("Author", "kye_user_sources::all_authors"))
            .unwrap()
            .expect("a saved cursor");
        assert!(!cursor.finished);
        assert_eq!(cursor.value["pages"], 2, "{}", cursor.value);
        assert!(
            cursor.value["next"].as_str().unwrap().ends_with("page=3"),
            "{}",
            cursor.value
        );
        drop(rt);

        // The catalog recovers; the same request again lists from page 3 on: pages 3, 4, 5
        // and the empty sixth, and fetches only what they hold.
        let server = TestServer::start(catalog(None, requests.clone()))
            .await
            .unwrap();
        let rt = runtime(server.base_url(), &db);
        let before = requests.load(Ordering::SeqCst);
        let summary = rt.fetch("Author").await.unwrap();
        assert_eq!(summary.status, kye::RunStatus::Completed, "{summary}");
        assert_eq!(summary.counts.stored, AUTHORS as u64 - 20, "{summary}");
        assert_eq!(summary.requested, AUTHORS as u64 - 20, "{summary}");
        assert_eq!(requests.load(Ordering::SeqCst) - before, 4);
        let cursor = rt
            .with_store(|s| s.list_cursor("Author", "kye_user_sources::all_authors"))
            .unwrap()
            .unwrap();
        assert!(cursor.finished, "{cursor:?}");

        // Listed to the end: the next run lists every page again.
        let before = requests.load(Ordering::SeqCst);
        let summary = rt.fetch("Author").await.unwrap();
        assert_eq!(summary.requested, AUTHORS as u64, "{summary}");
        assert_eq!(requests.load(Ordering::SeqCst) - before, 6);
    }

    /// `/books?after=K`: the ids in (K, last] ten at a time, `last` naming the page's last id
    /// (`null` on an empty page); each query is logged.
    fn books(last: Arc<AtomicU32>, first: u32, log: Arc<std::sync::Mutex<Vec<String>>>) -> Routes {
        Routes::new().generate_with_query("/books", move |_, q| {
            log.lock().unwrap().push(q.to_string());
            let after: u32 = q.strip_prefix("after=")?.parse().ok()?;
            let top = last.load(Ordering::SeqCst);
            let ids: Vec<u32> = ((after + 1).max(first)..=top).take(10).collect();
            let body = json!({ "ids": ids, "last": ids.last() });
            Some(Route::json(body.to_string()))
        })
    }

    #[tokio::test]
    async fn an_incremental_lister_starts_after_the_cursor_it_saved() {
        let last = Arc::new(AtomicU32::new(35));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = TestServer::start(books(last.clone(), 20, log.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
        // (`book_by_id` answers books without authors: quarantined, which counts as done.)
        let summary = rt.fetch("Book").await.unwrap();
        assert_eq!(summary.counts.rejected, 16, "{summary}");
        let cursor = rt
            .with_store(|s| s.list_cursor("Book", "kye_user_sources::new_books"))
            .unwrap()
            .unwrap();
        assert_eq!(cursor.value, json!(35));
        assert!(cursor.finished);

        // Seven books later, the next run lists only those.
        last.store(42, Ordering::SeqCst);
        log.lock().unwrap().clear();
        let summary = rt.fetch("Book").await.unwrap();
        assert_eq!(summary.requested, 7, "{summary}");
        assert_eq!(summary.counts.rejected, 7, "{summary}");
        assert_eq!(log.lock().unwrap()[0], "after=35");
        let rejects = rt.with_store(|s| s.rejects(None, None)).unwrap();
        assert_eq!(rejects.len(), 23);
    }

    #[tokio::test]
    async fn a_key_that_failed_holds_the_cursor_back_so_its_window_is_listed_again() {
        // `book_by_id` fails for id 13 (retryable, every time).
        let last = Arc::new(AtomicU32::new(25));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let server = TestServer::start(books(last, 1, log.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
        let summary = rt.fetch("Book").await.unwrap();
        assert_eq!(summary.counts.rejected, 24, "{summary}");
        assert_eq!(summary.counts.failed, 1, "{summary}");
        // Page 1 (ids 1-10) is done; the cursors after 20 and 25 cover the failed 13.
        let cursor = rt
            .with_store(|s| s.list_cursor("Book", "kye_user_sources::new_books"))
            .unwrap()
            .unwrap();
        assert_eq!(cursor.value, json!(10));
        assert!(!cursor.finished);

        log.lock().unwrap().clear();
        let summary = rt.fetch("Book").await.unwrap();
        assert_eq!(log.lock().unwrap()[0], "after=10");
        assert_eq!(summary.requested, 15, "{summary}");
    }

    #[tokio::test]
    async fn records_a_list_page_carries_are_stored_one_by_one_without_a_fetch() {
        let requests = Arc::new(AtomicU32::new(0));
        // Whole records on the pages; author 17's `born` is not a number.
        let routes = catalog_of(None, requests, |i| {
            let born = if i == 17 {
                json!("unknown")
            } else {
                json!(1900 + i)
            };
            json!({ "name": format!("author {i:02}"), "born": born })
        });
        let server = TestServer::start(routes).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
        let summary = rt.fetch("Author").await.unwrap();
        // The invalid record is quarantined alone; the rest of its page is stored.
        assert_eq!(summary.counts.stored, AUTHORS as u64 - 1, "{summary}");
        assert_eq!(summary.counts.rejected, 1, "{summary}");
        assert_eq!(summary.rejects[0].key, "\"author 17\"", "{summary}");
        // Stored as the page gave them (the `author` fetcher would have said 1970).
        let authors = rt
            .with_store(|s| s.records(&kye::store::RecordQuery::new("Author")))
            .unwrap();
        assert_eq!(authors[0]["born"], 1900);
        assert_eq!(authors[45]["born"], 1946);
        // Their provenance names the list function whose page carried them, not the fetcher.
        let mut query = kye::store::RecordQuery::new("Author");
        query.provenance = true;
        let authors = rt.with_store(|s| s.records(&query)).unwrap();
        assert_eq!(
            authors[0]["_kye"]["fetcher"], "kye_user_sources::all_authors",
            "{}",
            authors[0]
        );
        let rejects = rt.with_store(|s| s.rejects(None, None)).unwrap();
        assert_eq!(rejects[0].fetcher, "kye_user_sources::all_authors");
    }

    #[tokio::test]
    async fn a_stop_while_listing_stops_the_list_function_and_the_run_resumes() {
        use std::time::{Duration, Instant};
        let requests = Arc::new(AtomicU32::new(0));
        // Page 3 stalls for 20 s: the stop must not wait for it.
        let stall = Fault::Stall(Duration::from_secs(20));
        let server = TestServer::start(catalog_with(Some(3), stall, requests.clone()))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kye.db");
        let rt = runtime(server.base_url(), &db);
        let stop = rt.shutdown().clone();
        let began = Instant::now();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stop.trigger();
        });
        let summary = rt.fetch("Author").await.unwrap();
        stopper.await.unwrap();
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(summary.status, kye::RunStatus::Interrupted, "{summary}");
        assert_eq!(summary.counts.stored, 20, "{summary}");
        drop(rt);

        let server = TestServer::start(catalog(None, requests)).await.unwrap();
        let rt = runtime(server.base_url(), &db);
        let summary = rt.fetch("Author").await.unwrap();
        assert_eq!(summary.resumed_from, Some(kye::RunId(1)), "{summary}");
        assert_eq!(summary.counts.stored, AUTHORS as u64 - 20, "{summary}");
    }
}

// ---------------------------------------------------------------------------------------------
// Batch fetchers from another crate (`readers`, `#[kye::get(Reader.id, batch = 50)]`; `visits`,
// composite and sync): registered with their batch size, shown by `kye list`, and called once
// per group of keys against a loopback batch endpoint.

mod batched {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use kye::testing::{query_param, Route, Routes, TestServer};
    use kye::{Config, Runtime};
    use serde_json::json;

    /// `/readers?ids=1,2,3` (reader 13 is unknown) and `/readers/all?page=N` (30 ids a page,
    /// 120 in all); `largest` keeps the most ids one batch request asked for.
    fn library(largest: Arc<AtomicUsize>) -> Routes {
        Routes::new()
            .generate_with_query("/readers", move |rest, q| {
                if !rest.is_empty() {
                    return None;
                }
                let ids: Vec<u64> = query_param(q, "ids")?
                    .split(',')
                    .filter_map(|s| s.parse().ok())
                    .collect();
                largest.fetch_max(ids.len(), Ordering::SeqCst);
                let found: Vec<_> = ids
                    .into_iter()
                    .filter(|&id| id != 13)
                    .map(|id| json!({"id": id, "name": format!("reader {id}")}))
                    .collect();
                Some(Route::json(json!(found).to_string()))
            })
            .generate_with_query("/readers/all", |_, q| {
                let page: u64 = query_param(q, "page")?.parse().ok()?;
                let ids: Vec<u64> = ((page - 1) * 30 + 1..=(page * 30).min(120)).collect();
                Some(Route::json(json!({ "ids": ids }).to_string()))
            })
    }

    fn runtime(base: &str, db: &std::path::Path) -> Runtime {
        let config = Config::from_toml_str(
            &format!("[catalog]\nbase_url = \"{base}\"\n[run]\nmax_attempts = 2\n"),
            None,
        )
        .unwrap();
        Runtime::builder()
            .config(config)
            .env(Vec::new())
            .store(format!("sqlite:{}", db.display()))
            .handle_ctrl_c(false)
            .build()
            .unwrap()
    }

    #[test]
    fn a_batch_fetcher_is_registered_and_listed_with_its_batch_size() {
        let r = super::registry();
        let readers = r.fetcher("Reader", &["id"]).unwrap();
        assert_eq!(readers.batch_size(), Some(50));
        assert_eq!(readers.output.as_str(), "record");
        let visits = r.fetcher("Visits", &["year", "day"]).unwrap();
        assert_eq!(visits.batch_size(), Some(7));
        assert!(!visits.is_async);
        assert_eq!(visits.output.as_str(), "json");
        assert_eq!(r.fetcher("Book", &["id"]).unwrap().batch_size(), None);

        let listing = kye::Listing::new(r);
        let json: serde_json::Value = serde_json::from_str(&listing.to_json()).unwrap();
        let row = |f: &str| {
            json["fetchers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["function"] == f)
                .cloned()
                .unwrap()
        };
        assert_eq!(row("readers")["batch"], 50);
        // A fetcher of one key has no `batch` in the JSON.
        assert!(row("author").get("batch").is_none());
        let text = listing.to_text();
        assert!(text.contains("async, batch 50"), "{text}");
        assert!(text.contains("sync, batch 7"), "{text}");
        assert!(
            listing
                .to_markdown()
                .contains("| `Reader.id` | `readers` | async, batch 50 | record |"),
            "{}",
            listing.to_markdown()
        );
    }

    #[tokio::test]
    async fn a_batch_fetcher_is_called_once_per_group_of_keys() {
        let largest = Arc::new(AtomicUsize::new(0));
        let server = TestServer::start(library(largest.clone())).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
        let summary = rt.fetch("Reader.id in 1..=120").await.unwrap();
        assert_eq!(summary.counts.stored, 119, "{summary}");
        assert_eq!(summary.counts.missing, 1, "{summary}");
        assert_eq!(server.requests("/readers"), 3);
        assert_eq!(largest.load(Ordering::SeqCst), 50);

        // `get` of one key is a batch of one.
        let one = rt.get("Reader.id = 7").await.unwrap();
        assert_eq!(one.record().unwrap()["name"], "reader 7");
        assert_eq!(server.requests("/readers"), 4);
    }

    #[tokio::test]
    async fn listed_keys_of_a_batch_fetcher_are_grouped_as_they_arrive() {
        let largest = Arc::new(AtomicUsize::new(0));
        let server = TestServer::start(library(largest.clone())).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(server.base_url(), &dir.path().join("kye.db"));
        let summary = rt.fetch("Reader").await.unwrap();
        assert_eq!(summary.requested, 120, "{summary}");
        assert_eq!(
            (summary.counts.stored, summary.counts.missing),
            (119, 1),
            "{summary}"
        );
        // Pages of 30 grouped into calls of up to 50 (a group waits 20 ms for the next page):
        // a handful of calls, not 120.
        let calls = server.requests("/readers");
        assert!((3..=8).contains(&calls), "{calls} calls for 120 readers");
        assert!(largest.load(Ordering::SeqCst) <= 50);
    }

    #[tokio::test]
    async fn composite_keys_are_batched_as_tuples() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime("http://127.0.0.1:9", &dir.path().join("kye.db"));
        let summary = rt
            .fetch("Visits(year, day) in [(2024, 1), (2024, 2), (2024, 400), (2025, 1)]")
            .await
            .unwrap();
        assert_eq!(
            (summary.counts.stored, summary.counts.missing),
            (3, 1),
            "{summary}"
        );
        let stored = rt
            .with_store(|s| s.records(&kye::store::RecordQuery::new("Visits")))
            .unwrap();
        let mut got: Vec<(i64, i64, i64)> = stored
            .iter()
            .map(|v| {
                (
                    v["year"].as_i64().unwrap(),
                    v["day"].as_i64().unwrap(),
                    v["count"].as_i64().unwrap(),
                )
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, [(2024, 1, 2), (2024, 2, 4), (2025, 1, 2)]);
    }
}
