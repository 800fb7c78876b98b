//! A crate of fetchers written the way a user would: models from a `.kye` file, plain
//! functions annotated with `#[kye::get]`, nothing registered by hand. The workspace's
//! `tests/registry.rs` links it and checks that everything arrived in the registry.

kye::models!("catalog.kye");

/// Looks a book up by ISBN.
///
/// Only the first paragraph shows in listings.
#[kye::get]
pub async fn book_by_isbn(isbn: String, _ctx: &kye::Context) -> kye::Result<Option<Book>> {
    if isbn != "978-0" {
        return Ok(None);
    }
    Ok(Some(Book {
        id: 1,
        isbn,
        title: "The Rust Programming Language".into(),
        pages: Some(560.0),
        format: BookFormat::Paperback,
        authors: vec![Author {
            name: "Steve Klabnik".into(),
            born: None,
        }],
    }))
}

/// Looks a book up by its catalog number (sync: runs on the blocking pool).
#[kye::get(Book.id)]
pub fn book_by_id(id: u32) -> kye::Result<serde_json::Value> {
    if id == 13 {
        return Err(kye::Error::retryable("catalog busy"));
    }
    Ok(serde_json::json!({ "id": id, "isbn": format!("isbn-{id}"), "title": "untitled" }))
}

/// An author by name.
#[kye::get]
pub fn author(name: String) -> kye::Result<Author> {
    Ok(Author {
        name,
        born: Some(1970.0),
    })
}

/// Opening hours for a day.
#[kye::get]
pub async fn opening(year: i64, month: u8, day: u8) -> kye::Result<Opening> {
    Ok(Opening {
        year,
        month: month.into(),
        day: day.into(),
        hours: "9-17".into(),
    })
}

/// Every author the catalog lists, page by page (`catalog.base_url`/authors?page=N).
#[kye::list(Author.name)]
pub async fn all_authors(ctx: &kye::Context, keys: kye::Keys<String>) -> kye::Result<()> {
    let base = ctx
        .config("catalog.base_url")
        .ok_or_else(|| kye::Error::permanent("set catalog.base_url"))?;
    let paging = kye::http::Paginator::page_number("page").items("authors");
    let mut pages = ctx.pages(&format!("{base}/authors"), &paging)?;
    while let Some(page) = pages.next().await? {
        for a in &page.items {
            let name = a["name"]
                .as_str()
                .ok_or_else(|| kye::Error::permanent(format!("an author without a name: {a}")))?;
            keys.send(name.to_string()).await?;
        }
    }
    Ok(())
}
