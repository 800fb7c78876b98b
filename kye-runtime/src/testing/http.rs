//! Just enough HTTP/1.1 request parsing for the test server: the request line and the headers
//! that decide framing and connection reuse. Everything here is total: malformed input yields
//! an error value, never a panic.

/// Longest request head (request line plus headers) the server accepts; longer heads get 431.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// Largest request body the server reads and discards; larger bodies get 413.
pub(crate) const MAX_REQUEST_BODY: u64 = 1024 * 1024;

/// The request method, as far as the server cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Other,
}

/// What the server needs from a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    /// Path without query string or fragment, always starting with `/` (or `*`).
    pub(crate) path: String,
    /// The query string, without `?` (empty when there is none).
    pub(crate) query: String,
    /// Whether the client allows the connection to be reused after this request.
    pub(crate) keep_alive: bool,
    /// Length of the request body that follows the head.
    pub(crate) content_length: u64,
    /// The `Authorization` header, if sent (compared by [`super::Route::require_authorization`]).
    pub(crate) authorization: Option<String>,
}

/// Why a request head was refused. Each maps to one response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Not a valid HTTP/1.x request head (400).
    Malformed,
    /// An HTTP version other than 1.0 and 1.1 (505).
    Version,
    /// A request body framed with `Transfer-Encoding` (501: this server only reads `Content-Length`).
    TransferEncoding,
}

/// Returns the length of the request head (including the terminating blank line) if `buf`
/// holds a complete one. Accepts bare `\n` line ends as well as `\r\n`.
pub(crate) fn head_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        // The line after this newline is empty if it is immediately `\n` or `\r\n`.
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Parses a complete request head as found by [`head_len`].
pub(crate) fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(HeadError::Malformed)?;

    let mut parts = request_line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err(HeadError::Malformed),
    };
    if !method.bytes().all(is_token_byte) {
        return Err(HeadError::Malformed);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed),
    };
    let path = request_path(target).ok_or(HeadError::Malformed)?;
    let query = request_query(target);

    let mut content_length: Option<u64> = None;
    let mut close = false;
    let mut authorization = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed)?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HeadError::Malformed);
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| HeadError::Malformed)?;
            // Repeated Content-Length headers must agree (RFC 9112 §6.3).
            if content_length.is_some_and(|old| old != n) {
                return Err(HeadError::Malformed);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }

    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(RequestHead {
        method,
        path,
        query,
        // HTTP/1.0 keep-alive would need `Connection: keep-alive` echoed back; this server
        // simply closes HTTP/1.0 connections, which every client handles.
        keep_alive: http11 && !close,
        content_length: content_length.unwrap_or(0),
        authorization,
    })
}

/// The path of a request target in origin form (`/a/b?q`) or absolute form
/// (`http://host/a/b?q`), without query string or fragment.
fn request_path(target: &str) -> Option<String> {
    let rest = if target.starts_with('/') || target == "*" {
        target
    } else {
        let after_scheme = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        match after_scheme.find('/') {
            Some(i) => &after_scheme[i..],
            None => "/",
        }
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = &rest[..end];
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    Some(path.to_owned())
}

/// The query string of a request target (without `?` and any fragment).
fn request_query(target: &str) -> String {
    let Some((_, rest)) = target.split_once('?') else {
        return String::new();
    };
    rest.split('#').next().unwrap_or("").to_owned()
}

/// `tchar` from RFC 9110 §5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The standard reason phrase of a status code, or `""` for codes without one.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_head_end_with_crlf_and_lf() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\nHost: x\n\nrest"), Some(24));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_len(b""), None);
    }

    #[test]
    fn parses_a_reqwest_style_head() {
        let h = parse_head(
            b"GET /pokemon/25/?limit=3 HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/pokemon/25/");
        assert!(h.keep_alive);
        assert_eq!(h.content_length, 0);
    }

    #[test]
    fn connection_close_and_http10_disable_reuse() {
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn absolute_form_targets_are_reduced_to_their_path() {
        let h = parse_head(b"HEAD http://127.0.0.1:9/type/13/#x HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(h.method, Method::Head);
        assert_eq!(h.path, "/type/13/");
        let h = parse_head(b"GET http://127.0.0.1:9 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(h.path, "/");
    }

    #[test]
    fn rejects_malformed_heads() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET nopath HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad),
                Err(HeadError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Version)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::TransferEncoding)
        );
    }

    #[test]
    fn other_methods_and_bodies_are_understood() {
        let h = parse_head(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        assert_eq!(h.method, Method::Other);
        assert_eq!(h.content_length, 5);
    }
}
