//! Redaction: the step every text takes before it is shown, logged or stored.
//!
//! A process-wide list of sensitive values (every secret kye reads, and values derived from them
//! that kye sends, such as a Basic `Authorization` header) and of sensitive query parameters. [`redact_text`] replaces
//! each known value, in every encoded form kye may have written it, by `[redacted]`;
//! [`redact_url`] also replaces credential query parameters and a password in the authority.
//!
//! A leaf module: it names nothing else of the crate, so errors, secrets, HTTP and the
//! executor can all use it.

use std::sync::{OnceLock, RwLock};

/// The text that replaces a secret wherever it would be shown.
pub const REDACTED: &str = "[redacted]";

fn known() -> &'static RwLock<Vec<String>> {
    static KNOWN: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(|| RwLock::new(Vec::new()))
}

fn sensitive_params() -> &'static RwLock<Vec<String>> {
    static PARAMS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    PARAMS.get_or_init(|| RwLock::new(Vec::new()))
}

fn remember(value: &str) {
    // Very short values would redact unrelated text; they are weak secrets anyway.
    if value.len() < 4 {
        return;
    }
    let forms = encoded_forms(value);
    if let Ok(k) = known().read() {
        if forms.iter().all(|f| k.contains(f)) {
            return;
        }
    }
    if let Ok(mut k) = known().write() {
        for form in forms {
            if form.len() >= 4 && !k.contains(&form) {
                k.push(form);
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        k.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Every form in which kye (or the HTTP client under it) may write `value` into a request or a
/// text: as is, JSON-escaped, and percent-encoded the ways URLs carry it (form encoding with `+`
/// or `%20` for a space, the minimal encoding a URL parser applies to a raw query, and the
/// encoding of everything but unreserved characters).
fn encoded_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let mut add = |f: String| {
        if !forms.contains(&f) {
            forms.push(f);
        }
    };
    if let Ok(json) = serde_json::to_string(value) {
        add(json[1..json.len() - 1].to_string());
    }
    let form = percent_encode(
        value,
        |b| b.is_ascii_alphanumeric() || b"*-._".contains(&b),
        true,
    );
    add(form.clone());
    add(form.replace('+', "%20"));
    add(percent_encode(
        value,
        |b| (0x21..0x7f).contains(&b) && !b"\"#<>'".contains(&b),
        false,
    ));
    add(percent_encode(
        value,
        |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b),
        false,
    ));
    forms
}

/// Percent-encodes every byte `keep` refuses (upper-case hex); with `space_plus`, a space is `+`.
fn percent_encode(value: &str, keep: impl Fn(u8) -> bool, space_plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Registers text derived from secrets that kye sends (such as the base64 of `user:password`
/// in a Basic `Authorization` header), so [`redact_text`] replaces it (and its encoded forms)
/// like a secret value.
pub fn register_sensitive_value(value: &str) {
    remember(value);
}

/// Registers the credentials of a URL's userinfo (`http://user:password@host/`), which the HTTP
/// client sends as Basic authentication: the password (as written and decoded) and the base64
/// of `user:password`.
pub fn register_url_credentials(url: &reqwest::Url) {
    let Some(password) = url.password() else {
        return;
    };
    let decode = |s: &str| percent_decode(s);
    remember(password);
    let plain = decode(password);
    remember(&plain);
    remember(&base64(
        format!("{}:{plain}", decode(url.username())).as_bytes(),
    ));
}

/// Decodes `%XX` escapes (invalid ones are kept as they are; invalid UTF-8 is replaced).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (for Basic authentication; avoids a dependency for ten lines).
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Registers a query parameter name whose value must be redacted in URLs (done automatically
/// for parameters configured for query authentication).
pub fn register_sensitive_param(name: &str) {
    if let Ok(mut p) = sensitive_params().write() {
        let lower = name.to_ascii_lowercase();
        if !p.contains(&lower) {
            p.push(lower);
        }
    }
}

/// Query parameters always treated as credentials.
const SENSITIVE_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "api-key",
    "token",
    "access_token",
    "auth",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "signature",
    "sig",
    "refresh_token",
    "id_token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
];

fn is_sensitive_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_PARAMS.contains(&lower.as_str())
        || sensitive_params()
            .read()
            .map(|p| p.contains(&lower))
            .unwrap_or(true)
}

/// The first credential-like query parameter (`access_token`, `signature`, a registered one)
/// with a value in `text` read as a URL or a path with a query (`/list?page=2&sig=...`).
pub(crate) fn credential_param(text: &str) -> Option<String> {
    if !text.contains('=') {
        return None;
    }
    let base = reqwest::Url::parse("http://kye.invalid/").ok()?;
    let url = reqwest::Url::parse(text)
        .or_else(|_| base.join(text))
        .ok()?;
    url.query_pairs()
        .find(|(k, v)| !v.is_empty() && is_sensitive_param(k))
        .map(|(k, _)| k.into_owned())
}

/// Replaces every known secret value in `text` by `[redacted]`.
pub fn redact_text(text: &str) -> String {
    let Ok(k) = known().read() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for v in k.iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

/// [`redact_url`] of a URL already parsed: one without a query or a password (most requests a
/// fetcher makes) is only passed through [`redact_text`], without parsing it again.
pub fn redact_parsed_url(url: &reqwest::Url) -> String {
    if url.password().is_none() && url.query().is_none() {
        return redact_text(url.as_str());
    }
    redact_url(url.as_str())
}

/// A URL safe to show: credential query parameters and a password in the authority are replaced
/// by `[redacted]`, and known secret values anywhere in it too. Text that is not a URL is only
/// passed through [`redact_text`].
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return redact_text(url);
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("redacted"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_sensitive_param(&k) {
                    REDACTED.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        let mut ser = parsed.query_pairs_mut();
        ser.clear();
        for (k, v) in &pairs {
            ser.append_pair(k, v);
        }
        drop(ser);
    }
    // The serializer percent-encodes the brackets; show them plainly.
    let shown = parsed.as_str().replace("%5Bredacted%5D", REDACTED);
    redact_text(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        register_sensitive_param("X-Custom-Key");
        let u =
            redact_url("http://user:pw@127.0.0.1:8080/p?id=25&api_key=abc123&x-custom-key=zzz9");
        assert!(!u.contains("abc123"), "{u}");
        assert!(!u.contains("zzz9"), "{u}");
        assert!(!u.contains(":pw@"), "{u}");
        assert!(u.contains("id=25"), "{u}");
        assert!(u.contains("api_key=[redacted]"), "{u}");
        register_sensitive_value("s3cr3t-value-xyz");
        assert_eq!(
            redact_text("token s3cr3t-value-xyz leaked"),
            "token [redacted] leaked"
        );
        assert!(!redact_url("http://h/p/s3cr3t-value-xyz").contains("s3cr3t"));
    }

    #[test]
    fn a_parsed_url_is_redacted_as_its_text_is() {
        register_sensitive_value("p4th-s3cret-77");
        for text in [
            "http://127.0.0.1:8080/pokemon/25/",
            "http://h/p/p4th-s3cret-77/x",
            "http://user:pw@h:1/p",
            "http://h/p?id=25&api_key=abc123",
            "https://h/p?token=p4th-s3cret-77#frag",
        ] {
            let parsed = reqwest::Url::parse(text).unwrap();
            assert_eq!(redact_parsed_url(&parsed), redact_url(text), "{text}");
        }
        let parsed = reqwest::Url::parse("http://h/p/p4th-s3cret-77/x").unwrap();
        assert!(!redact_parsed_url(&parsed).contains("p4th-s3cret-77"));
    }

    #[test]
    fn encoded_forms_and_url_credentials_are_redacted() {
        register_sensitive_value(r#"a b+/"\c-91f2"#);
        for form in [
            r#"a b+/"\c-91f2"#,
            r#"a b+/\"\\c-91f2"#,
            "a+b%2B%2F%22%5Cc-91f2",
            "a%20b%2B%2F%22%5Cc-91f2",
            "a%20b+/%22\\c-91f2",
        ] {
            assert_eq!(redact_text(&format!("<{form}>")), "<[redacted]>", "{form}");
        }
        let url = reqwest::Url::parse("http://reporter:p%40ss-5e6f@h/").unwrap();
        register_url_credentials(&url);
        // base64("reporter:p@ss-5e6f")
        for form in ["p%40ss-5e6f", "p@ss-5e6f", "cmVwb3J0ZXI6cEBzcy01ZTZm"] {
            assert_eq!(redact_text(&format!("<{form}>")), "<[redacted]>", "{form}");
        }
    }
}
