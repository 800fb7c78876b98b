//! HTTP: the step between a fetcher and its source. The shared client behind
//! [`crate::Context`]'s helpers, and the per-host rate limiter every request waits on.
//!
//! One `reqwest::Client` per runtime (connection pooling, keep-alive), TLS by rustls with the
//! `ring` provider. Every request goes through the same steps: authentication from `kye.toml`
//! is added, the host's rate limiter is asked for a token, the response status is mapped to an
//! [`ErrorClass`](crate::ErrorClass), and the body is read with a size limit.
//!
//! | response                                    | error class   | notes                                 |
//! |---------------------------------------------|---------------|---------------------------------------|
//! | 2xx                                         | —             | body read up to `run.max_body_size`   |
//! | 404, 410                                    | `Missing`     | the key is recorded as missing        |
//! | 408, 425, 429, 5xx                          | `Retryable`   | `Retry-After` (seconds or HTTP-date) kept; 429/503 pause the host |
//! | other 4xx (400, 401, 403, ...), 3xx left    | `Permanent`   | reason = status + start of the body   |
//! | timeout, connection error, body cut short   | `Retryable`   |                                       |
//! | body larger than the limit                  | `Permanent`   | names the limit                       |
//! | body not JSON / truncated JSON              | `Retryable`   | `get_json*`                           |
//! | JSON that can never parse (bad UTF-8, too deep, `1e400`) | `Permanent` | `get_json*`              |
//! | redirect to another origin                  | `Permanent`   | never followed, see [`CrossOriginRedirect`] |
//! | JSON of the wrong shape for `T`             | `Permanent`   | `get_json::<T>`                       |
//!
//! Every error carries the request URL with credentials redacted.
//!
//! | file        | what                                                                    |
//! |-------------|-------------------------------------------------------------------------|
//! | `client.rs` | one request: authentication, rate limit, status → error class, body     |
//! | `rate.rs`   | per-host token buckets, `Retry-After` pauses, unreachable hosts          |
//! | `url.rs`    | host keys, safe path segments, same-origin checks                        |
//! | `paginate.rs` | list endpoints: how an API pages, from one page to the next or the end |

mod client;
mod paginate;
pub mod rate;
mod url;

use std::time::Duration;

/// reqwest's types that kye's signatures name: the method and the request builder of
/// [`crate::Context::request`], response statuses, and the URL and headers an [`crate::Auth`]
/// is applied to. Re-exported so a fetcher crate can name them without depending on reqwest.
pub use reqwest::header::{HeaderMap, HeaderName};
pub use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};

pub use client::{
    install_crypto_provider, parse_json, parse_retry_after, CrossOriginRedirect, Http,
    HttpResponse, MAX_REDIRECTS,
};
pub use paginate::{Page, PageEnd, PagePosition, PageWalk, Paginator, DEFAULT_MAX_PAGES};
pub use url::{host_key, path_segment, same_origin};

/// Default maximum response body: 32 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 32 << 20;
/// Default timeout of one HTTP request (connect + headers + body, after any rate-limit wait): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connect timeout: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of the shared client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest response body accepted, in bytes (`run.max_body_size`, default 32 MiB).
    pub max_body_size: u64,
    /// Timeout of one request, counted from when it is sent (after the host's rate limiter let
    /// it go) to the end of the body (`run.timeout`, default 30 s).
    pub request_timeout: Duration,
    /// Per-fetcher request timeouts (`fetchers."<name>".timeout`).
    pub fetcher_timeouts: std::collections::HashMap<String, Duration>,
    /// Connect timeout (`http.connect_timeout`, default 10 s).
    pub connect_timeout: Duration,
    /// `User-Agent` header (`http.user_agent`, default `kye/<version>`).
    pub user_agent: String,
    /// Idle connections kept per host (`http.pool_max_idle_per_host`, default 64).
    pub pool_max_idle_per_host: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            fetcher_timeouts: std::collections::HashMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("kye/", env!("CARGO_PKG_VERSION")).to_string(),
            pool_max_idle_per_host: 64,
        }
    }
}
