//! The error type fetchers return and the runtime reports.
//!
//! Every error has a [`ErrorClass`] that decides what the executor does with it:
//! retry it, record the key as missing, or fail the key with a reason.

use std::time::Duration;

/// What the executor should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The source has no such key (e.g. HTTP 404): recorded as missing, not retried.
    Missing,
    /// A transient failure (timeout, connection error, 429, 5xx, truncated body): retried.
    Retryable,
    /// A failure that retrying cannot fix (400, 401, 403, a bug): the key fails with the reason.
    Permanent,
}

impl ErrorClass {
    /// Lower-case name: `missing`, `retryable` or `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Missing => "missing",
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a fetcher or from the runtime.
///
/// `Display` prints the message followed by the request URL when one is attached. URLs are
/// redacted when attached ([`Error::with_url`]): query parameters that carry credentials
/// (`api_key`, `token`, ... and every parameter configured for query authentication) and
/// passwords in the authority are replaced by `[redacted]`, so an error can be logged as is.
///
/// `Debug` reads like `Display` followed by the chain of causes, as `anyhow`'s does, so a `main`
/// that returns [`Result`] prints `Error: HTTP 404 ...` rather than a struct dump; the alternate
/// form (`{:#?}`) shows the fields.
#[derive(thiserror::Error)]
#[error("{message}{}", url_suffix(url.as_deref()))]
pub struct Error {
    class: ErrorClass,
    message: String,
    url: Option<String>,
    status: Option<u16>,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() {
            return f
                .debug_struct("Error")
                .field("class", &self.class)
                .field("message", &self.message)
                .field("url", &self.url)
                .field("status", &self.status)
                .field("retry_after", &self.retry_after)
                .field("source", &self.source)
                .finish();
        }
        // Causes whose text the message already carries (`Error::other`) are not repeated.
        let mut shown = self.to_string();
        f.write_str(&shown)?;
        let mut header = false;
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !shown.contains(&text) {
                if !header {
                    f.write_str("\n\nCaused by:")?;
                    header = true;
                }
                write!(f, "\n    {text}")?;
                shown = text;
            }
            cause = c.source();
        }
        Ok(())
    }
}

fn url_suffix(url: Option<&str>) -> String {
    match url {
        Some(u) => format!(" ({u})"),
        None => String::new(),
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn with_class(class: ErrorClass, message: impl Into<String>) -> Self {
        Error {
            class,
            message: message.into(),
            url: None,
            status: None,
            retry_after: None,
            source: None,
        }
    }

    /// The source has no value for the requested key.
    pub fn missing(message: impl Into<String>) -> Self {
        Self::with_class(ErrorClass::Missing, message)
    }

    /// A transient failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::with_class(ErrorClass::Retryable, message)
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::with_class(ErrorClass::Permanent, message)
    }

    /// The same error for another key of a batch: class, message, URL, status and
    /// `Retry-After`; the source error is not copied (its text is in the message).
    pub(crate) fn for_another_key(&self) -> Self {
        Error {
            class: self.class,
            message: self.message.clone(),
            url: self.url.clone(),
            status: self.status,
            retry_after: self.retry_after,
            source: None,
        }
    }

    /// Wraps any error as a permanent failure.
    pub fn other<E>(error: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut e = Self::with_class(ErrorClass::Permanent, error.to_string());
        e.source = Some(Box::new(error));
        e
    }

    /// What the executor should do about this error.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request URL the error is about, if any (secrets already redacted).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// The HTTP status, if the error came from a response.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Attaches the request URL, with credentials redacted: credential query parameters, a
    /// password in the authority, and every registered secret.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(crate::redact::redact_url(&url.into()));
        self
    }

    /// Attaches the underlying cause (shown by `std::error::Error::source`).
    pub fn with_source<E>(mut self, source: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with context, e.g. the fetcher or the key: `"{context}: {message}"`.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Whether the executor retries this error.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }

    /// Attaches the HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Attaches a `Retry-After` delay.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::other(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        // A body that does not parse is usually a truncated response: worth a retry.
        // Not when no complete document could parse (invalid UTF-8, too deep, `1e400`).
        let mut err = if never_parses(&e) {
            Error::permanent(format!("invalid JSON: {e}"))
        } else {
            Error::retryable(format!("invalid JSON: {e}"))
        };
        err.source = Some(Box::new(e));
        err
    }
}

/// Whether a JSON syntax error is one that no complete response can fix: invalid UTF-8 in a
/// string, a lone surrogate `\u` escape, nesting over serde_json's limit (128), or a number out of
/// `f64` range (`1e400`). A body cut short is an `Eof` error instead, and stays retryable.
pub(crate) fn never_parses(e: &serde_json::Error) -> bool {
    let text = e.to_string();
    [
        "invalid unicode code point",
        "lone leading surrogate in hex escape",
        "unexpected end of hex escape",
        "recursion limit exceeded",
        "number out of range",
    ]
    .iter()
    .any(|m| text.starts_with(m))
}

/// The message a panic carries (`panic!` with a literal or a format gives a `&str` or a
/// `String`), for the error that a panicking fetcher becomes.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_like_display_with_the_causes() {
        let e = Error::permanent("HTTP 404 Not Found")
            .with_url("http://127.0.0.1:9/cat/1")
            .with_source(std::io::Error::other("connection reset"));
        assert_eq!(
            format!("{e:?}"),
            "HTTP 404 Not Found (http://127.0.0.1:9/cat/1)\n\nCaused by:\n    connection reset"
        );
        // `Error::other` carries its cause's text already: no repetition.
        let e = Error::other(std::io::Error::other("disk full"));
        assert_eq!(format!("{e:?}"), "disk full");
        // The alternate form still shows the fields.
        assert!(format!("{e:#?}").contains("class: Permanent"));
    }

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        assert_eq!(panic_message(&*caught(|| panic!("plain"))), "plain");
        assert_eq!(
            panic_message(&*caught(|| panic!("formatted {}", 7))),
            "formatted 7"
        );
        assert_eq!(
            panic_message(&*caught(|| std::panic::panic_any(42u8))),
            "(non-string panic payload)"
        );
    }
}
