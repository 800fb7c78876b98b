//! Step 3 of the flow, fetch: walking a list endpoint page by page. [`Paginator`] says how an
//! API pages (offset and limit, page numbers, a cursor in the body or in a header, the next
//! page's URL in the body, or RFC 8288 `Link` headers) and when it is done; [`PageWalk`] is the
//! state of one walk: from one page's URL, headers and body to the next page's URL or the end.
//! No I/O here: [`crate::Context::pages`] sends the requests (with the run's retries).

use std::collections::HashSet;
use std::fmt;

use reqwest::header::{HeaderMap, LINK};
use reqwest::Url;
use serde_json::Value;

use super::url::same_origin;
use crate::error::{Error, Result};
use crate::redact::redact_url;

/// Most pages one walk fetches unless [`Paginator::max_pages`] says otherwise: a bound, so an
/// API whose paging never ends (or loops with changing URLs) cannot keep a run going forever.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;

/// How a list endpoint pages, and where a page's items, total and "more" flag are.
///
/// Paths into a page's JSON body are JSON Pointers (`/results`, `/meta/next_cursor`) or dotted
/// names (`results`, `meta.next_cursor`). A walk stops after a page with no items, a page
/// without a next page (no `next`, no cursor, no `Link: rel="next"`), a page whose
/// [`has_more`](Paginator::has_more) flag is `false`, once the [`total`](Paginator::total)
/// number of items was seen, or after [`max_pages`](Paginator::max_pages) pages. A next page
/// whose URL (or cursor) was already fetched in this walk is an error, not a loop; so is a
/// next URL on another origin (credentials for one host are never sent to another).
///
/// ```
/// use kye_runtime::http::Paginator;
///
/// // PokeAPI: `{"count": 1302, "next": "https://…?offset=20&limit=20", "results": [...]}`.
/// let pokeapi = Paginator::next_url("next").items("results").total("count");
/// // `?offset=0&limit=100`, `?offset=100&limit=100`, ... until a short or empty page.
/// let offsets = Paginator::offset("offset", "limit", 100).items("/data");
/// // GitHub: `Link: <…?page=2>; rel="next"`, the body an array of items.
/// let github = Paginator::link_header();
/// # let _ = (pokeapi, offsets, github);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paginator {
    kind: Kind,
    items: Option<String>,
    total: Option<String>,
    has_more: Option<String>,
    max_pages: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Offset {
        offset: String,
        limit: String,
        size: u64,
    },
    PageNumber {
        page: String,
        first: u64,
        size: Option<(String, u64)>,
    },
    BodyCursor {
        path: String,
        param: String,
    },
    HeaderCursor {
        header: String,
        param: String,
    },
    NextUrl {
        path: String,
    },
    LinkHeader,
}

impl Paginator {
    fn of(kind: Kind) -> Paginator {
        Paginator {
            kind,
            items: None,
            total: None,
            has_more: None,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }

    /// `?{offset}=0&{limit}={size}`, then the offset moves on by the number of items each page
    /// held, so a server that caps the limit below `size` still gets asked for every item.
    /// Stops after an empty page (or at the [`total`](Paginator::total), when the API gives
    /// one: that saves the last request). Needs [`items`](Paginator::items) unless the body is
    /// an array.
    pub fn offset(offset: &str, limit: &str, size: u64) -> Paginator {
        Paginator::of(Kind::Offset {
            offset: offset.to_string(),
            limit: limit.to_string(),
            size: size.max(1),
        })
    }

    /// `?{page}=1`, `?{page}=2`, ... until an empty page. Start at another number with
    /// [`first_page`](Paginator::first_page), ask for a page size with
    /// [`page_size`](Paginator::page_size).
    pub fn page_number(page: &str) -> Paginator {
        Paginator::of(Kind::PageNumber {
            page: page.to_string(),
            first: 1,
            size: None,
        })
    }

    /// The next page's cursor is at `path` in the body and is sent back as `?{param}=CURSOR`;
    /// a missing, `null` or empty cursor ends the walk.
    pub fn body_cursor(path: &str, param: &str) -> Paginator {
        Paginator::of(Kind::BodyCursor {
            path: path.to_string(),
            param: param.to_string(),
        })
    }

    /// The next page's cursor is in the response header `header` and is sent back as
    /// `?{param}=CURSOR`; a missing or empty header ends the walk.
    pub fn header_cursor(header: &str, param: &str) -> Paginator {
        Paginator::of(Kind::HeaderCursor {
            header: header.to_string(),
            param: param.to_string(),
        })
    }

    /// The next page's URL is at `path` in the body (absolute, or relative to the page's URL);
    /// a missing, `null` or empty value ends the walk.
    pub fn next_url(path: &str) -> Paginator {
        Paginator::of(Kind::NextUrl {
            path: path.to_string(),
        })
    }

    /// The next page's URL is the `Link` header's `rel="next"` target (RFC 8288); no such link
    /// ends the walk.
    pub fn link_header() -> Paginator {
        Paginator::of(Kind::LinkHeader)
    }

    /// Where the page's items are (an array). Without it, a body that is an array is the items.
    pub fn items(mut self, path: &str) -> Paginator {
        self.items = Some(path.to_string());
        self
    }

    /// Where the total number of items is: the walk stops once that many were seen.
    pub fn total(mut self, path: &str) -> Paginator {
        self.total = Some(path.to_string());
        self
    }

    /// Where a boolean saying whether more pages follow is: `false` ends the walk.
    pub fn has_more(mut self, path: &str) -> Paginator {
        self.has_more = Some(path.to_string());
        self
    }

    /// Most pages fetched (default [`DEFAULT_MAX_PAGES`]); the walk ends after that many.
    pub fn max_pages(mut self, pages: u64) -> Paginator {
        self.max_pages = pages.max(1);
        self
    }

    /// For [`page_number`](Paginator::page_number): the first page's number (default 1).
    pub fn first_page(mut self, first: u64) -> Paginator {
        if let Kind::PageNumber { first: f, .. } = &mut self.kind {
            *f = first;
        }
        self
    }

    /// For [`page_number`](Paginator::page_number): also send `?{param}={size}`.
    pub fn page_size(mut self, param: &str, size: u64) -> Paginator {
        if let Kind::PageNumber { size: s, .. } = &mut self.kind {
            *s = Some((param.to_string(), size.max(1)));
        }
        self
    }

    /// Continues a walk where `position` says it stood (saved by an earlier run). The next
    /// URL must be on the origin of `url` (the list endpoint the function starts from): a
    /// tampered cursor cannot send kye's credentials elsewhere.
    pub fn resume(&self, url: &str, position: &PagePosition) -> Result<PageWalk> {
        let mut walk = self.walk(url)?;
        let next = walk.start.join(&position.next).map_err(|e| {
            Error::permanent(format!(
                "cannot resume paging at {}: {e}",
                redact_url(&position.next)
            ))
        })?;
        if !same_origin(&walk.start, &next) {
            return Err(Error::permanent(format!(
                "cannot resume paging at {}: it is not on the origin of {}",
                redact_url(&position.next),
                redact_url(url)
            )));
        }
        walk.next = Some(next);
        walk.pages = position.pages;
        walk.items_seen = position.items;
        walk.offset = position.offset;
        walk.page_number = position.page_number;
        Ok(walk)
    }

    /// Starts a walk at `url`.
    pub fn walk(&self, url: &str) -> Result<PageWalk> {
        let start = Url::parse(url).map_err(|e| {
            Error::permanent(format!("cannot page through {}: {e}", redact_url(url)))
        })?;
        let first = match &self.kind {
            Kind::Offset {
                offset,
                limit,
                size,
            } => with_params(&start, &[(offset, "0".into()), (limit, size.to_string())]),
            Kind::PageNumber { page, first, size } => {
                let mut params = vec![(page, first.to_string())];
                if let Some((p, n)) = size {
                    params.push((p, n.to_string()));
                }
                with_params(&start, &params)
            }
            _ => start.clone(),
        };
        Ok(PageWalk {
            paginator: self.clone(),
            start,
            next: Some(first),
            pages: 0,
            items_seen: 0,
            offset: 0,
            page_number: match &self.kind {
                Kind::PageNumber { first, .. } => *first,
                _ => 0,
            },
            seen: HashSet::new(),
            ended: None,
        })
    }
}

/// Why a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEnd {
    /// A page held no items.
    Empty,
    /// A page named no next page.
    NoNext,
    /// A page's "more" flag was `false`.
    NoMore,
    /// As many items as the total were seen.
    Total,
    /// The most pages allowed were fetched.
    MaxPages,
}

impl fmt::Display for PageEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageEnd::Empty => "an empty page",
            PageEnd::NoNext => "no next page",
            PageEnd::NoMore => "the page said there is no more",
            PageEnd::Total => "the total was reached",
            PageEnd::MaxPages => "the page limit was reached",
        })
    }
}

/// One page of a walk, as read.
#[derive(Debug, Clone)]
pub struct Page {
    /// 1 for the first page fetched, and so on.
    pub number: u64,
    /// The page's URL (with any credentials in it redacted).
    pub url: String,
    /// The page's items (the array at [`Paginator::items`], or the body if it is an array).
    pub items: Vec<Value>,
    /// The total the page announced ([`Paginator::total`]), if any.
    pub total: Option<u64>,
    /// The page's body without its items (its other fields: counts, cursors, links).
    pub body: Value,
}

/// Where a walk stands between two pages: enough to continue it in another run
/// ([`Paginator::resume`]). A list function saves it as its cursor
/// ([`Keys::save_cursor`](crate::Keys::save_cursor)) after handing over a page's keys, and
/// a resumed run continues from the page after the last one whose keys were all done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PagePosition {
    /// The next page: its path and query on the list endpoint's origin (so a position saved
    /// against one host continues on another, e.g. a moved base URL), or an absolute URL.
    pub next: String,
    /// Pages read before it.
    pub pages: u64,
    /// Items read before it.
    pub items: u64,
    /// The offset of the next page (offset paging).
    pub offset: u64,
    /// The number of the next page (page-number paging).
    pub page_number: u64,
}

/// The state of one walk through a list endpoint: which URL comes next, what was seen.
#[derive(Debug, Clone)]
pub struct PageWalk {
    paginator: Paginator,
    start: Url,
    next: Option<Url>,
    pages: u64,
    items_seen: u64,
    offset: u64,
    page_number: u64,
    /// URLs (and cursors) already fetched, to refuse a loop.
    seen: HashSet<String>,
    ended: Option<PageEnd>,
}

impl PageWalk {
    /// The URL of the next page to fetch; `None` once the walk is over.
    pub fn next_url(&self) -> Option<&Url> {
        self.next.as_ref()
    }

    /// Where the walk stands, to continue it later ([`Paginator::resume`]); `None` once it
    /// is over.
    pub fn position(&self) -> Option<PagePosition> {
        self.next.as_ref().map(|next| PagePosition {
            next: if same_origin(&self.start, next) {
                match next.query() {
                    Some(q) => format!("{}?{q}", next.path()),
                    None => next.path().to_string(),
                }
            } else {
                next.to_string()
            },
            pages: self.pages,
            items: self.items_seen,
            offset: self.offset,
            page_number: self.page_number,
        })
    }

    /// Why the walk ended, once it has.
    pub fn ended(&self) -> Option<PageEnd> {
        self.ended
    }

    /// Ends the walk where it is: no page follows (after a page that could not be fetched).
    pub fn abandon(&mut self) {
        self.next = None;
    }

    /// Pages read so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Items read so far.
    pub fn items_seen(&self) -> u64 {
        self.items_seen
    }

    /// Reads the page fetched from [`next_url`](PageWalk::next_url): its items, and the URL of
    /// the page after it (or the end). A body of the wrong shape (no items array where one is
    /// expected, a cursor that is not a string or number) is a permanent error naming the
    /// page and the path.
    pub fn read(&mut self, headers: &HeaderMap, mut body: Value) -> Result<Page> {
        let url = self
            .next
            .take()
            .ok_or_else(|| Error::permanent("the walk through the pages is over"))?;
        self.seen.insert(url.as_str().to_string());
        self.pages += 1;
        let shown = redact_url(url.as_str());
        let p = self.paginator.clone();
        let number = self.pages;
        let wrong = |what: String| Error::permanent(format!("page {number} ({shown}): {what}"));

        let items = match &p.items {
            Some(path) => match take_at(&mut body, path) {
                Some(Value::Array(items)) => items,
                Some(Value::Null) | None => {
                    return Err(wrong(format!("no items at `{path}` (expected an array)")))
                }
                Some(other) => {
                    return Err(wrong(format!(
                        "the items at `{path}` are {}, not an array",
                        kind_of(&other)
                    )))
                }
            },
            None => match std::mem::take(&mut body) {
                Value::Array(items) => items,
                other => {
                    body = other;
                    if matches!(p.kind, Kind::Offset { .. } | Kind::PageNumber { .. }) {
                        return Err(wrong(
                            "the body is not an array; say where the items are with `.items(path)`"
                                .to_string(),
                        ));
                    }
                    Vec::new()
                }
            },
        };
        let total = match &p.total {
            Some(path) => match value_at(&body, path) {
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    wrong(format!(
                        "the total at `{path}` is {}, not a count",
                        kind_of(v)
                    ))
                })?),
                None => None,
            },
            None => None,
        };
        let count = items.len() as u64;
        self.items_seen += count;

        let end = if count == 0 && (p.items.is_some() || body.is_null()) {
            Some(PageEnd::Empty)
        } else if p.has_more.as_deref().and_then(|path| value_at(&body, path))
            == Some(&Value::Bool(false))
        {
            Some(PageEnd::NoMore)
        } else if total.is_some_and(|t| self.items_seen >= t) {
            Some(PageEnd::Total)
        } else if self.pages >= p.max_pages {
            Some(PageEnd::MaxPages)
        } else {
            None
        };
        if let Some(end) = end {
            self.ended = Some(end);
        } else {
            match self.after(&url, headers, &body, count)? {
                Ok(next) => {
                    if !same_origin(&self.start, &next) {
                        return Err(wrong(format!(
                            "the next page is on another origin ({}); kye does not follow it",
                            redact_url(next.as_str())
                        )));
                    }
                    if self.seen.contains(next.as_str()) {
                        return Err(wrong(format!(
                            "the next page ({}) was already fetched: the API's paging loops",
                            redact_url(next.as_str())
                        )));
                    }
                    self.next = Some(next);
                }
                Err(end) => self.ended = Some(end),
            }
        }
        Ok(Page {
            number: self.pages,
            url: shown,
            items,
            total,
            body,
        })
    }

    /// The page after `url`, or why there is none.
    fn after(
        &mut self,
        url: &Url,
        headers: &HeaderMap,
        body: &Value,
        count: u64,
    ) -> Result<std::result::Result<Url, PageEnd>> {
        let page = self.pages;
        let shown = || redact_url(url.as_str());
        Ok(match &self.paginator.kind {
            Kind::Offset {
                offset,
                limit,
                size,
            } => {
                self.offset += count;
                Ok(with_params(
                    url,
                    &[(offset, self.offset.to_string()), (limit, size.to_string())],
                ))
            }
            Kind::PageNumber { page: param, .. } => {
                self.page_number += 1;
                Ok(with_params(url, &[(param, self.page_number.to_string())]))
            }
            Kind::BodyCursor { path, param } => match value_at(body, path) {
                None | Some(Value::Null) => Err(PageEnd::NoNext),
                Some(Value::String(s)) if s.is_empty() => Err(PageEnd::NoNext),
                Some(Value::String(s)) => Ok(with_params(url, &[(param, s.clone())])),
                Some(Value::Number(n)) => Ok(with_params(url, &[(param, n.to_string())])),
                Some(other) => {
                    return Err(Error::permanent(format!(
                        "page {page} ({}): the cursor at `{path}` is {}, not a string or number",
                        shown(),
                        kind_of(other)
                    )))
                }
            },
            Kind::HeaderCursor { header, param } => {
                match headers.get(header.as_str()).map(|v| v.to_str()) {
                    None => Err(PageEnd::NoNext),
                    Some(Ok(s)) if s.trim().is_empty() => Err(PageEnd::NoNext),
                    Some(Ok(s)) => Ok(with_params(url, &[(param, s.trim().to_string())])),
                    Some(Err(_)) => {
                        return Err(Error::permanent(format!(
                            "page {page} ({}): the `{header}` header is not text",
                            shown()
                        )))
                    }
                }
            }
            Kind::NextUrl { path } => match value_at(body, path) {
                None | Some(Value::Null) => Err(PageEnd::NoNext),
                Some(Value::String(s)) if s.is_empty() => Err(PageEnd::NoNext),
                Some(Value::String(s)) => Ok(url.join(s).map_err(|e| {
                    Error::permanent(format!(
                        "page {page} ({}): the next URL at `{path}` is not a URL: {e}",
                        shown()
                    ))
                })?),
                Some(other) => {
                    return Err(Error::permanent(format!(
                        "page {page} ({}): the next URL at `{path}` is {}, not a string",
                        shown(),
                        kind_of(other)
                    )))
                }
            },
            Kind::LinkHeader => {
                let next = headers
                    .get_all(LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(link_next);
                match next {
                    None => Err(PageEnd::NoNext),
                    Some(target) => Ok(url.join(&target).map_err(|e| {
                        Error::permanent(format!(
                            "page {page} ({}): the Link header's next target is not a URL: {e}",
                            shown()
                        ))
                    })?),
                }
            }
        })
    }
}

/// `url` with each `(name, value)` query parameter set (replacing any of the same name).
fn with_params(url: &Url, params: &[(&String, String)]) -> Url {
    let mut out = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(name, _)| name.as_str() == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = out.query_pairs_mut();
        q.clear();
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
        for (name, value) in params {
            q.append_pair(name, value);
        }
    }
    out
}

/// A JSON Pointer for `path`: kept when it starts with `/`, else dotted names.
fn pointer(path: &str) -> String {
    if path.starts_with('/') || path.is_empty() {
        return path.to_string();
    }
    path.split('.')
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn value_at<'v>(body: &'v Value, path: &str) -> Option<&'v Value> {
    body.pointer(&pointer(path))
}

fn take_at(body: &mut Value, path: &str) -> Option<Value> {
    body.pointer_mut(&pointer(path)).map(Value::take)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The target of the `rel="next"` link in one `Link` header value (RFC 8288): links are
/// `<target>; param; param`, separated by commas; `rel` may list several types.
fn link_next(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let open = rest.find('<')?;
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let after = &rest[close + 1..];
        // This link's parameters run to the next `<` (a comma inside a quoted value aside).
        let end = after.find('<').unwrap_or(after.len());
        let params = &after[..end];
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches(|c| c == '"' || c == ',')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = &after[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn read(walk: &mut PageWalk, body: Value) -> Page {
        walk.read(&HeaderMap::new(), body).expect("page reads")
    }

    #[test]
    fn offset_pages_move_by_the_items_received_and_stop_on_an_empty_page() {
        let p = Paginator::offset("offset", "limit", 2).items("data");
        let mut w = p.walk("http://h/list?sort=id&offset=9").unwrap();
        assert_eq!(
            w.next_url().unwrap().as_str(),
            "http://h/list?sort=id&offset=0&limit=2"
        );
        let page = read(&mut w, json!({"data": [1, 2], "n": 5}));
        assert_eq!(page.items, vec![json!(1), json!(2)]);
        assert_eq!(page.body, json!({"data": null, "n": 5}));
        assert_eq!(
            w.next_url().unwrap().as_str(),
            "http://h/list?sort=id&offset=2&limit=2"
        );
        // A server capping the limit at 1: the offset moves by what came.
        read(&mut w, json!({"data": [3]}));
        assert_eq!(
            w.next_url().unwrap().as_str(),
            "http://h/list?sort=id&offset=3&limit=2"
        );
        read(&mut w, json!({"data": []}));
        assert_eq!(w.next_url(), None);
        assert_eq!(w.ended(), Some(PageEnd::Empty));
        assert_eq!((w.pages(), w.items_seen()), (3, 3));
    }

    #[test]
    fn page_numbers_count_up_until_an_empty_page() {
        let p = Paginator::page_number("p")
            .first_page(0)
            .page_size("per", 50);
        let mut w = p.walk("http://h/x").unwrap();
        assert_eq!(w.next_url().unwrap().as_str(), "http://h/x?p=0&per=50");
        read(&mut w, json!([1]));
        assert_eq!(w.next_url().unwrap().as_str(), "http://h/x?per=50&p=1");
        read(&mut w, json!([]));
        assert_eq!(w.ended(), Some(PageEnd::Empty));
    }

    #[test]
    fn cursors_come_from_the_body_or_a_header() {
        let p = Paginator::body_cursor("meta.next", "cursor").items("/items");
        let mut w = p.walk("http://h/x").unwrap();
        read(&mut w, json!({"items": [1], "meta": {"next": "abc="}}));
        assert_eq!(w.next_url().unwrap().as_str(), "http://h/x?cursor=abc%3D");
        read(&mut w, json!({"items": [2], "meta": {"next": null}}));
        assert_eq!(w.ended(), Some(PageEnd::NoNext));

        let p = Paginator::header_cursor("x-next", "after");
        let mut w = p.walk("http://h/x").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-next", HeaderValue::from_static("42"));
        w.read(&headers, json!([1])).unwrap();
        assert_eq!(w.next_url().unwrap().as_str(), "http://h/x?after=42");
        w.read(&HeaderMap::new(), json!([2])).unwrap();
        assert_eq!(w.ended(), Some(PageEnd::NoNext));
    }

    #[test]
    fn next_urls_resolve_against_the_page_and_stay_on_its_origin() {
        let p = Paginator::next_url("next").items("results").total("count");
        let mut w = p.walk("https://api.test/v2/pokemon/").unwrap();
        let page = read(
            &mut w,
            json!({"count": 3, "next": "?offset=2&limit=2", "results": [{"n": 1}, {"n": 2}]}),
        );
        assert_eq!(page.total, Some(3));
        assert_eq!(
            w.next_url().unwrap().as_str(),
            "https://api.test/v2/pokemon/?offset=2&limit=2"
        );
        read(
            &mut w,
            json!({"count": 3, "next": "/v2/pokemon/?offset=4", "results": [{"n": 3}]}),
        );
        assert_eq!(w.ended(), Some(PageEnd::Total));

        let mut w = p.walk("https://api.test/v2/pokemon/").unwrap();
        let err = w
            .read(
                &HeaderMap::new(),
                json!({"next": "https://elsewhere.test/p?token=s3cr3t", "results": [1]}),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("another origin"), "{err}");
    }

    #[test]
    fn a_page_seen_before_is_a_loop_not_a_next_page() {
        let p = Paginator::next_url("/next").items("/r");
        let mut w = p.walk("http://h/a").unwrap();
        read(&mut w, json!({"next": "http://h/b", "r": [1]}));
        let err = w
            .read(&HeaderMap::new(), json!({"next": "http://h/a", "r": [2]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("page 2") && err.contains("loops"), "{err}");
    }

    #[test]
    fn has_more_false_and_max_pages_end_the_walk() {
        let p = Paginator::body_cursor("c", "c").items("i").has_more("more");
        let mut w = p.walk("http://h/").unwrap();
        read(&mut w, json!({"i": [1], "c": "x", "more": false}));
        assert_eq!(w.ended(), Some(PageEnd::NoMore));

        let p = Paginator::page_number("page").max_pages(2);
        let mut w = p.walk("http://h/").unwrap();
        read(&mut w, json!([1]));
        read(&mut w, json!([2]));
        assert_eq!(w.ended(), Some(PageEnd::MaxPages));
    }

    #[test]
    fn link_headers_name_the_next_page() {
        assert_eq!(
            link_next(r#"<https://h/x?page=1>; rel="prev", <https://h/x?page=3>; rel="next""#),
            Some("https://h/x?page=3".to_string())
        );
        assert_eq!(
            link_next(r#"<https://h/x?page=3>; title="a, b"; rel="last next""#),
            Some("https://h/x?page=3".to_string())
        );
        assert_eq!(link_next(r#"<https://h/x?page=9>; rel="last""#), None);
        assert_eq!(link_next("garbage"), None);
    }

    #[test]
    fn bodies_of_the_wrong_shape_name_the_page_and_path() {
        let p = Paginator::offset("o", "l", 10).items("results");
        let mut w = p.walk("http://u:pw@h/x").unwrap();
        let err = w
            .read(&HeaderMap::new(), json!({"results": {"a": 1}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("page 1") && err.contains("`results`"), "{err}");
        assert!(!err.contains("pw"), "{err}");

        let p = Paginator::next_url("next").items("r");
        let mut w = p.walk("http://h/x").unwrap();
        let err = w
            .read(&HeaderMap::new(), json!({"next": 5, "r": [1]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a number, not a string"), "{err}");
    }
}
