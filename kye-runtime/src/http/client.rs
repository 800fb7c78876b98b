//! One HTTP request, the way every fetcher's request goes: authentication from `kye.toml` is
//! added, the host's rate limiter is asked for a token, the response status is mapped to an
//! [`ErrorClass`] (the table in [`crate::http`]), and the body is read with a size limit.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Url;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::rate::HostLimiter;
use super::url::{host_key, same_origin};
use super::HttpSettings;
use crate::auth::AuthTable;
use crate::error::{never_parses, Error, ErrorClass, Result};
use crate::redact::{redact_parsed_url, redact_text, redact_url};

/// The shared client: reqwest + authentication + per-host rate limits + settings.
#[derive(Debug)]
pub struct Http {
    settings: HttpSettings,
    auth: AuthTable,
    limiter: Arc<HostLimiter>,
    client: OnceLock<std::result::Result<reqwest::Client, String>>,
}

impl Default for Http {
    fn default() -> Self {
        Http::new(
            HttpSettings::default(),
            AuthTable::default(),
            Arc::default(),
        )
    }
}

/// Installs rustls' `ring` crypto provider as the process default (once; a provider installed
/// earlier by the application is kept).
pub fn install_crypto_provider() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}

impl Http {
    /// A client with these settings, authentication and limiter. The reqwest client is built on
    /// first use.
    pub fn new(settings: HttpSettings, auth: AuthTable, limiter: Arc<HostLimiter>) -> Self {
        Http {
            settings,
            auth,
            limiter,
            client: OnceLock::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The per-host limiter (shared with the executor).
    pub fn limiter(&self) -> &Arc<HostLimiter> {
        &self.limiter
    }

    /// The underlying reqwest client (pooled). Requests sent on it directly skip kye's
    /// authentication, rate limits and error mapping: prefer [`crate::Context::request`].
    pub fn client(&self) -> Result<&reqwest::Client> {
        let built = self.client.get_or_init(|| {
            install_crypto_provider();
            reqwest::Client::builder()
                .user_agent(self.settings.user_agent.clone())
                .connect_timeout(self.settings.connect_timeout)
                .pool_max_idle_per_host(self.settings.pool_max_idle_per_host)
                .tcp_nodelay(true)
                // Credentials must never reach another origin: same-origin redirects are
                // followed (with the request's authentication), any other is refused, and no
                // `Referer` (which would carry a query-parameter secret) is ever sent.
                .redirect(redirect_policy())
                .referer(false)
                .build()
                .map_err(|e| e.to_string())
        });
        built
            .as_ref()
            .map_err(|e| Error::permanent(format!("cannot build the HTTP client: {e}")))
    }

    /// A request builder for `url` with the authentication for `fetcher`/host applied.
    pub fn request(
        &self,
        fetcher: Option<&str>,
        method: Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder> {
        self.request_for(fetcher, None, method, url)
    }

    /// [`Http::request`] for a context of `source`: its declared authentication goes first
    /// to its own hosts.
    pub(crate) fn request_for(
        &self,
        fetcher: Option<&str>,
        source: Option<&'static crate::source::SourceRegistration>,
        method: Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder> {
        let mut parsed = Url::parse(url)
            .map_err(|e| Error::permanent(format!("invalid URL: {e}")).with_url(url))?;
        // reqwest sends a password in the URL as Basic authentication: redact every form of it.
        crate::redact::register_url_credentials(&parsed);
        let mut headers = HeaderMap::new();
        self.auth
            .apply(fetcher, source, &mut parsed, &mut headers)?;
        Ok(self
            .client()?
            .request(method, parsed)
            .headers(headers)
            .timeout(self.timeout_for(fetcher)))
    }

    /// The request timeout for a fetcher (its own `timeout`, else `run.timeout`).
    pub fn timeout_for(&self, fetcher: Option<&str>) -> Duration {
        fetcher
            .and_then(|f| self.settings.fetcher_timeouts.get(f))
            .copied()
            .unwrap_or(self.settings.request_timeout)
    }

    /// Sends a request: waits for the host's rate limiter, maps the status to an error class and
    /// reads the body (up to the size limit). Returns the status, headers and body.
    pub async fn execute(&self, builder: reqwest::RequestBuilder) -> Result<HttpResponse> {
        let request = builder
            .build()
            .map_err(|e| Error::permanent(format!("invalid request: {}", e.without_url())))?;
        let url = request.url().clone();
        let timeout = request.timeout().copied();
        let shown = redact_parsed_url(&url);
        let host = host_key(&url);
        let method = request.method().clone();
        self.limiter.acquire(&host).await;
        if let Some((down, failures)) = self.limiter.unreachable() {
            if down == host {
                return Err(unreachable_error(&host, failures).with_url(shown));
            }
        }
        let started = std::time::Instant::now();
        let sent = tokio::time::Instant::now();
        let client = self.client()?;
        let mut response = client.execute(request).await.map_err(|e| {
            if e.is_connect() {
                self.limiter.connect_failed(&host, sent);
            }
            transport_error(&e, "request failed", timeout).with_url(shown.clone())
        })?;
        self.limiter.reached(&host);
        let status = response.status();
        // Taken, not copied: reading the body needs only its own length, not the headers.
        let headers = std::mem::take(response.headers_mut());
        tracing::debug!(
            method = %method,
            url = %shown,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "response"
        );
        if !status.is_success() {
            let retry_after = parse_retry_after(&headers, SystemTime::now());
            if let (Some(delay), true) = (
                retry_after,
                status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE,
            ) {
                self.limiter.pause(&host, delay);
            }
            // A little of the body explains most 4xx (`{"error": "invalid key"}`).
            let snippet = read_limited(response, 1024, true, timeout)
                .await
                .ok()
                .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .filter(|s| !s.is_empty());
            return Err(status_error(status, snippet.as_deref(), retry_after).with_url(shown));
        }
        let body = read_limited(response, self.settings.max_body_size, false, timeout)
            .await
            .map_err(|e| e.with_url(shown.clone()))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
            url: shown,
        })
    }

    /// `GET url` → raw body.
    pub async fn get_bytes(&self, fetcher: Option<&str>, url: &str) -> Result<HttpResponse> {
        let builder = self.request(fetcher, Method::GET, url)?;
        self.execute(builder).await
    }

    /// [`Http::get_bytes`] for a context of `source` (see [`Http::request_for`]).
    pub(crate) async fn get_bytes_for(
        &self,
        fetcher: Option<&str>,
        source: Option<&'static crate::source::SourceRegistration>,
        url: &str,
    ) -> Result<HttpResponse> {
        let builder = self.request_for(fetcher, source, Method::GET, url)?;
        self.execute(builder).await
    }
}

/// A successful response, body read in full.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status (always 2xx).
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// The request URL, credentials redacted.
    pub url: String,
}

impl HttpResponse {
    /// Parses the body as JSON into `T` (see the module docs for the error classes).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        parse_json(&self.body).map_err(|e| e.with_url(self.url.clone()))
    }

    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses a JSON body: syntax errors and truncation are retryable, shape errors permanent.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let msg = match e.classify() {
            Category::Eof => format!("truncated JSON body ({} bytes): {e}", body.len()),
            Category::Syntax if never_parses(&e) => {
                return Error::permanent(format!(
                    "response is not valid JSON, and retrying cannot change that: {e}"
                ))
                .with_source(e);
            }
            Category::Syntax | Category::Io => format!("response is not valid JSON: {e}"),
            Category::Data => {
                return Error::permanent(format!(
                    "JSON response does not have the expected shape: {e}"
                ))
                .with_source(e);
            }
        };
        Error::retryable(msg).with_source(e)
    })
}

/// A request not sent because its host was found unreachable earlier in the run.
fn unreachable_error(host: &str, failures: u32) -> Error {
    Error::permanent(format!(
        "cannot reach {host}: {failures} connection failures in a row, the last after a pause; \
         not tried again in this run"
    ))
}

fn transport_error(e: &reqwest::Error, what: &str, timeout: Option<Duration>) -> Error {
    let detail = redact_text(&error_chain(e));
    if e.is_timeout() {
        let after = timeout
            .map(|t| format!(" after {} (run.timeout)", crate::duration::human(t)))
            .unwrap_or_default();
        Error::retryable(format!("{what}: timed out{after}"))
    } else if e.is_connect() {
        Error::retryable(format!("{what}: connection failed ({detail})"))
    } else if e.is_redirect() {
        if find_source::<CrossOriginRedirect>(e).is_some() {
            Error::permanent(format!("{what}: {detail}"))
        } else {
            Error::permanent(format!("{what}: too many redirects ({detail})"))
        }
    } else if e.is_builder() {
        Error::permanent(format!("{what}: {detail}"))
    } else {
        Error::retryable(format!("{what}: {detail}"))
    }
}

/// Redirects followed before giving up (reqwest's default is also 10).
pub const MAX_REDIRECTS: usize = 10;

/// Same-origin redirects only (scheme, host and port all equal to the first request's), at most
/// [`MAX_REDIRECTS`]; a redirect elsewhere fails the request with [`CrossOriginRedirect`].
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if !same_origin(first, attempt.url()) {
            let error = CrossOriginRedirect {
                from: redact_url(first.as_str()),
                to: redact_url(attempt.url().as_str()),
            };
            return attempt.error(error);
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        attempt.follow()
    })
}

/// A redirect to another origin, refused so that no credential (configured header, query
/// parameter, cookie) can follow it. Both URLs are redacted.
#[derive(Debug, thiserror::Error)]
#[error(
    "the source redirected to another origin ({to}), which kye does not follow so that \
     credentials never leave the source; point the fetcher at the final URL instead"
)]
pub struct CrossOriginRedirect {
    /// The URL first requested (redacted).
    pub from: String,
    /// Where the source redirected to (redacted).
    pub to: String,
}

fn find_source<T: std::error::Error + 'static>(e: &reqwest::Error) -> Option<&T> {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<T>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// The error and its causes on one line, without the URL (which reqwest would print unredacted).
fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(
            if e.is_timeout() {
                "operation timed out"
            } else if e.is_body() || e.is_decode() {
                "error reading the body"
            } else {
                "error"
            }
            .to_string(),
        );
    }
    parts.join(": ")
}

fn status_error(status: StatusCode, snippet: Option<&str>, retry_after: Option<Duration>) -> Error {
    let reason = status.canonical_reason().unwrap_or("");
    let mut msg = format!("HTTP {} {reason}", status.as_u16())
        .trim_end()
        .to_string();
    if let Some(s) = snippet {
        let mut s: String = redact_text(s).chars().take(200).collect();
        s = s.replace(['\n', '\r'], " ");
        msg.push_str(": ");
        msg.push_str(&s);
    }
    let code = status.as_u16();
    let mut err = match code {
        404 | 410 => Error::missing(msg),
        408 | 425 | 429 => Error::retryable(msg),
        500..=599 => Error::retryable(msg),
        _ => Error::permanent(msg),
    };
    err = err.with_status(code);
    if let Some(d) = retry_after {
        err = err.with_retry_after(d);
    }
    err
}

/// Parses `Retry-After`: a number of seconds or an HTTP-date (relative to `now`).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads a body chunk by chunk, failing as soon as it exceeds `limit`. With `truncate_ok`, stops
/// at the limit instead (for error snippets).
async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
    truncate_ok: bool,
    timeout: Option<Duration>,
) -> Result<Vec<u8>> {
    if !truncate_ok {
        if let Some(len) = response.content_length() {
            if len > limit {
                return Err(too_large(limit, Some(len)));
            }
        }
    }
    let mut body =
        Vec::with_capacity(response.content_length().unwrap_or(8 * 1024).min(limit) as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    if truncate_ok {
                        let room = (limit as usize).saturating_sub(body.len());
                        body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                        return Ok(body);
                    }
                    return Err(too_large(limit, None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                let err = transport_error(
                    &e,
                    &format!("response body cut short after {} bytes", body.len()),
                    timeout,
                );
                // A cut body is transient even when reqwest does not call it a timeout.
                return Err(if err.class() == ErrorClass::Permanent {
                    Error::retryable(err.message().to_string())
                } else {
                    err
                });
            }
        }
    }
}

fn too_large(limit: u64, announced: Option<u64>) -> Error {
    let what = match announced {
        Some(n) => format!("response body of {n} bytes"),
        None => "response body".to_string(),
    };
    Error::permanent(format!(
        "{what} exceeds the limit of {limit} bytes (run.max_body_size)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_seconds_and_http_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            parse_retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(120)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soonish"));
        assert_eq!(parse_retry_after(&h, now), None);
    }

    #[test]
    fn statuses_map_to_classes() {
        let c = |s: u16| status_error(StatusCode::from_u16(s).unwrap(), None, None).class();
        assert_eq!(c(404), ErrorClass::Missing);
        assert_eq!(c(410), ErrorClass::Missing);
        for s in [400, 401, 403, 422] {
            assert_eq!(c(s), ErrorClass::Permanent, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(c(s), ErrorClass::Retryable, "{s}");
        }
        let e = status_error(StatusCode::FORBIDDEN, Some("{\"error\":\"bad key\"}"), None);
        assert_eq!(e.to_string(), "HTTP 403 Forbidden: {\"error\":\"bad key\"}");
        assert_eq!(e.status(), Some(403));
    }

    #[test]
    fn json_errors_are_classified() {
        let e = parse_json::<serde_json::Value>(br#"{"id": 25, "na"#).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(e.message().contains("truncated"), "{e}");
        let e = parse_json::<serde_json::Value>(b"<html>").unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        // Content that no retry can fix is permanent.
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let bad_utf8: &[u8] = b"{\"name\": \"pika\xff\xfechu\"}";
        for body in [
            bad_utf8,
            b"{\"weight\": 1e400}",
            b"[\"\\ud800\"]",
            deep.as_bytes(),
        ] {
            let e = parse_json::<serde_json::Value>(body).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
            assert!(e.message().contains("retrying cannot change that"), "{e}");
            let e = Error::from(serde_json::from_slice::<serde_json::Value>(body).unwrap_err());
            assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            id: u32,
        }
        let e = parse_json::<P>(br#"{"id": "x"}"#).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Permanent);
    }
}
