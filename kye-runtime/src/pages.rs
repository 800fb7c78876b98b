//! Step 3 of the flow, fetch: walking a list endpoint through a [`Context`]. Each page is one
//! `GET` through the shared client (authentication, rate limits, status → error class, body
//! limit), retried like a fetcher's call (the run's `max_attempts` and backoff, `Retry-After`
//! honoured); [`Paginator`] decides the next page.

use serde_json::Value;

use crate::context::Context;
use crate::error::Result;
use crate::exec::{CallPolicy, ExecSettings};
use crate::http::{Page, PageEnd, PagePosition, PageWalk, Paginator};

/// The pages of a list endpoint, fetched one at a time as [`Pages::next`] is awaited: memory
/// holds one page, however many the endpoint has.
///
/// ```no_run
/// # async fn demo(ctx: &kye_runtime::Context) -> kye_runtime::Result<()> {
/// use kye_runtime::http::Paginator;
///
/// let paging = Paginator::next_url("next").items("results").total("count");
/// let mut pages = ctx.pages("https://pokeapi.co/api/v2/pokemon/?limit=100", &paging)?;
/// while let Some(page) = pages.next().await? {
///     for item in &page.items {
///         println!("{}", item["name"]);
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Pages<'c> {
    ctx: &'c Context,
    walk: PageWalk,
    policy: CallPolicy,
    retries: u64,
}

impl Context {
    /// Walks the list endpoint at `url` page by page, as `paginator` says it pages. Every page
    /// request is retried like a fetcher's call (`run.max_attempts`, or the fetcher's own
    /// setting); a page that still fails ends the walk with its error, naming the page.
    pub fn pages(&self, url: &str, paginator: &Paginator) -> Result<Pages<'_>> {
        let settings = ExecSettings::from_config(self.settings())?;
        let policy = match self.fetcher() {
            Some(f) => settings.policy(f).clone(),
            None => settings.default_policy.clone(),
        };
        Ok(Pages {
            ctx: self,
            walk: paginator.walk(url)?,
            policy,
            retries: 0,
        })
    }

    /// [`Context::pages`] continuing from `position` (a [`Pages::position`] an earlier run
    /// saved), or from the first page when `position` is `None`.
    ///
    /// ```no_run
    /// # use kye_runtime::{Context, Keys, Result};
    /// # use kye_runtime::http::{PagePosition, Paginator};
    /// # async fn all_pokemon(ctx: &Context, keys: Keys<u32>) -> Result<()> {
    /// let paging = Paginator::next_url("next").items("results");
    /// let start = keys.resume_cursor::<PagePosition>()?;
    /// let mut pages = ctx.pages_from("https://pokeapi.co/api/v2/pokemon/", start, &paging)?;
    /// while let Some(page) = pages.next().await? {
    ///     for p in &page.items {
    ///         # let id = 1;
    ///         keys.send(id).await?;
    ///     }
    ///     if let Some(at) = pages.position() {
    ///         keys.save_cursor(&at).await?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn pages_from(
        &self,
        url: &str,
        position: Option<PagePosition>,
        paginator: &Paginator,
    ) -> Result<Pages<'_>> {
        let mut pages = self.pages(url, paginator)?;
        if let Some(p) = position {
            pages.walk = paginator.resume(url, &p)?;
        }
        Ok(pages)
    }
}

impl Pages<'_> {
    /// The next page, or `None` after the last one. An error (a page that kept failing, a body
    /// of the wrong shape, paging that loops or leaves the origin) ends the walk: later calls
    /// return `None`.
    pub async fn next(&mut self) -> Result<Option<Page>> {
        let Some(url) = self.walk.next_url().cloned() else {
            return Ok(None);
        };
        let ctx = self.ctx;
        let number = self.walk.pages() + 1;
        let response = ctx
            .retrying(&self.policy, &mut self.retries, || async {
                ctx.get_response(url.as_str()).await
            })
            .await
            .map_err(|e| e.context(format!("page {number} of the list")));
        let result = response.and_then(|r| {
            let body: Value = r.json()?;
            self.walk.read(&r.headers, body)
        });
        if result.is_err() {
            // Nothing follows a page that could not be read.
            self.walk.abandon();
        }
        result.map(Some)
    }

    /// Where the walk stands (the next page), to save as a list function's cursor and continue
    /// from with [`Context::pages_from`]; `None` once the walk is over.
    pub fn position(&self) -> Option<PagePosition> {
        self.walk.position()
    }

    /// Why the walk ended, once it has (`None` while pages remain, or after an error).
    pub fn ended(&self) -> Option<PageEnd> {
        self.walk.ended()
    }

    /// Pages read so far.
    pub fn pages_read(&self) -> u64 {
        self.walk.pages()
    }

    /// Items read so far.
    pub fn items_read(&self) -> u64 {
        self.walk.items_seen()
    }

    /// Page requests retried so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }
}
