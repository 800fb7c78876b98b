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
///
/// An entry with more than a name is the whole record: handed over as it is, so `author` is
/// not called for it. After each page it saves where it stands, so a run that stopped
/// part-way continues from the page after the last one whose authors were all done.
#[kye::list(Author.name)]
pub async fn all_authors(ctx: &kye::Context, keys: kye::Keys<String>) -> kye::Result<()> {
    let base = ctx
        .config_str("catalog.base_url")
        .ok_or_else(|| kye::Error::permanent("set catalog.base_url"))?;
    let paging = kye::http::Paginator::page_number("page").items("authors");
    let start = keys.resume_cursor::<kye::http::PagePosition>()?;
    let mut pages = ctx.pages_from(&format!("{base}/authors"), start, &paging)?;
    while let Some(page) = pages.next().await? {
        for a in &page.items {
            let name = a["name"]
                .as_str()
                .ok_or_else(|| kye::Error::permanent(format!("an author without a name: {a}")))?;
            if a.as_object().is_some_and(|o| o.len() > 1) {
                keys.record(name.to_string(), a.clone()).await?;
            } else {
                keys.send(name.to_string()).await?;
            }
        }
        if let Some(at) = pages.position() {
            keys.save_cursor(&at).await?;
        }
    }
    Ok(())
}

/// Books added since the last run (`catalog.base_url`/books?after=ID): an incremental list
/// function, which starts after the last id it saw.
#[kye::list(Book.id)]
pub async fn new_books(ctx: &kye::Context, keys: kye::Keys<u32>) -> kye::Result<()> {
    let base = ctx
        .config_str("catalog.base_url")
        .ok_or_else(|| kye::Error::permanent("set catalog.base_url"))?;
    let after: u32 = keys.cursor()?.unwrap_or(0);
    let paging = kye::http::Paginator::body_cursor("last", "after").items("ids");
    let mut pages = ctx.pages(&format!("{base}/books?after={after}"), &paging)?;
    while let Some(page) = pages.next().await? {
        let mut last = None;
        for id in &page.items {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| kye::Error::permanent(format!("a book id that is not one: {id}")))?;
            keys.send(id).await?;
            last = Some(id);
        }
        if let Some(last) = last {
            keys.save_cursor(&last).await?;
        }
    }
    Ok(())
}

/// Card holders, up to 50 a request (`catalog.base_url`/readers?ids=1,2,3).
#[kye::get(Reader.id, batch = 50)]
pub async fn readers(ids: Vec<u32>, ctx: &kye::Context) -> kye::Result<Vec<Reader>> {
    let base = ctx
        .config_str("catalog.base_url")
        .ok_or_else(|| kye::Error::permanent("set catalog.base_url"))?;
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    ctx.get_json(&format!("{base}/readers?ids={}", ids.join(",")))
        .await
}

/// Every card holder the catalog lists (`catalog.base_url`/readers/all?page=N).
#[kye::list(Reader.id)]
pub async fn all_readers(ctx: &kye::Context, keys: kye::Keys<u32>) -> kye::Result<()> {
    let base = ctx
        .config_str("catalog.base_url")
        .ok_or_else(|| kye::Error::permanent("set catalog.base_url"))?;
    let paging = kye::http::Paginator::page_number("page").items("ids");
    let mut pages = ctx.pages(&format!("{base}/readers/all"), &paging)?;
    while let Some(page) = pages.next().await? {
        for id in &page.items {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| kye::Error::permanent(format!("not a reader id: {id}")))?;
            keys.send(id).await?;
        }
    }
    Ok(())
}

/// Visitor counts of many days at once, from the door counter's log (sync, no HTTP); a day
/// the log does not have is left out of the answer (missing).
#[kye::get(Visits(year, day), batch = 7)]
pub fn visits(days: Vec<(i64, u16)>) -> kye::Result<Vec<serde_json::Value>> {
    Ok(days
        .into_iter()
        .filter(|(_, day)| *day <= 365)
        .map(|(year, day)| serde_json::json!({ "year": year, "day": day, "count": day * 2 }))
        .collect())
}
