//! URLs as the HTTP step sees them: the `host:port` key that limits and configuration are kept
//! by, a key made safe as one path segment, and the same-origin rule redirects follow.

use reqwest::Url;

use crate::error::{Error, Result};

/// The key used for per-host limits and configuration: `host:port`.
pub fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// A key as exactly one URL path segment, percent-encoded: every byte but the unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) is encoded, so `a/b`, `?`, `#` or a space stay inside the
/// segment.
///
/// A value that cannot be one segment is refused before any request is made, with a permanent
/// error naming it: the empty string, `.` and `..` (a URL parser resolves them to the parent
/// resource, even percent-encoded as `%2E%2E`), and any value that contains `/` or whose
/// percent-decoded form is one of these or contains `/` (`%2F`, `..%2F..`), since servers and
/// proxies decode such forms before routing.
///
/// ```
/// use kye_runtime::http::path_segment;
/// assert_eq!(path_segment("mr mime").unwrap(), "mr%20mime");
/// assert!(path_segment("..").is_err());
/// let url = format!("https://pokeapi.co/api/v2/pokemon/{}/", path_segment("pikachu")?);
/// # Ok::<(), kye_runtime::Error>(())
/// ```
pub fn path_segment(value: &str) -> Result<String> {
    let refuse = |why: &str| {
        Err(Error::permanent(format!(
            "the key {value:?} cannot be one URL path segment ({why}), so it was not requested"
        )))
    };
    // Decoded until stable (a bounded number of times): `%252E` is `%2E` is `.`.
    let mut forms = vec![value.to_string()];
    for _ in 0..4 {
        let Some(last) = forms.last() else { break };
        let decoded = crate::redact::percent_decode(last);
        if &decoded == last {
            break;
        }
        forms.push(decoded);
    }
    for form in &forms {
        if form.is_empty() {
            return refuse("it is empty");
        }
        if form == "." || form == ".." {
            return refuse("a URL resolves it to another resource");
        }
        if form.contains('/') {
            return refuse("it contains `/`");
        }
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// Whether two URLs have the same origin: scheme, host and (default-aware) port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    #[test]
    fn path_segments_cannot_address_another_resource() {
        assert_eq!(path_segment("mr-mime").unwrap(), "mr-mime");
        assert_eq!(path_segment("a b?c#d").unwrap(), "a%20b%3Fc%23d");
        assert_eq!(path_segment("...").unwrap(), "...");
        assert_eq!(path_segment("100%").unwrap(), "100%25");
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../type",
            "%2E",
            "%2e%2E",
            "%2F",
            "a%2fb",
            "%252E%252E",
            "%00%2F",
        ] {
            let e = path_segment(bad).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Permanent, "{bad}");
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
