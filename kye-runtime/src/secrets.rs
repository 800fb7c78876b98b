//! Secrets: API tokens and passwords, read from the environment or a secrets file.
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and `Display`, so it can sit in a struct that is
//! logged or shown in an error without leaking. The value is only reachable through
//! [`Secret::expose`].
//!
//! Lookup order for [`Secrets::get`]: the environment variable of that exact name, then the
//! secrets file. The secrets file is a dotenv-style text file (`NAME=value` lines, `#` comments,
//! optional single or double quotes around the value), named by `[secrets] file = "..."` in
//! `kye.toml` or by the `KYE_SECRETS_FILE` environment variable.
//!
//! Every secret value read through [`Secrets`] is also remembered by a process-wide redactor, and
//! [`redact_text`] replaces such values with `[redacted]`; the runtime runs it over error messages
//! before they are logged or stored.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use crate::error::{Error, Result};

/// The text that replaces a secret wherever it would be shown.
pub const REDACTED: &str = "[redacted]";

/// A secret value. `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value (and registers it with the redactor, see [`redact_text`]).
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        remember(&value);
        Secret(value.into())
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Where secrets come from: the environment, then an optional secrets file.
#[derive(Clone, Default)]
pub struct Secrets {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
    /// A named secrets file that does not exist: an error only when a secret is needed and
    /// found nowhere else (see [`Secrets::require`]).
    missing_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("file_entries", &self.file.len())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    /// No secrets at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Secrets from the given environment (name, value pairs) and an optional secrets file.
    ///
    /// A named file that cannot be read or parsed is an error (naming the file and the line,
    /// never the value). A named file that does not exist is not, yet: secrets set in the
    /// environment still work, and [`Secrets::require`] names the missing file when a secret is
    /// found nowhere.
    pub fn load(
        env: impl IntoIterator<Item = (String, String)>,
        file: Option<&Path>,
    ) -> Result<Self> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut missing_file = None;
        let file = match file {
            Some(path) if !path.exists() && path.symlink_metadata().is_err() => {
                missing_file = Some(path.to_path_buf());
                HashMap::new()
            }
            Some(path) => {
                let text = crate::config::read_text_file(path).map_err(|e| {
                    Error::permanent(format!("cannot read secrets file {}: {e}", path.display()))
                })?;
                parse_dotenv(&text).map_err(|(line, why)| {
                    Error::permanent(format!(
                        "secrets file {}: line {line}: {why}",
                        path.display()
                    ))
                })?
            }
            None => HashMap::new(),
        };
        Ok(Secrets {
            env,
            file,
            missing_file,
        })
    }

    /// Secrets from the process environment and an optional secrets file.
    pub fn from_env(file: Option<&Path>) -> Result<Self> {
        Self::load(std::env::vars(), file)
    }

    /// Adds or replaces a secret (useful in tests and for programmatic setup).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.file.insert(name.into(), value.into());
    }

    /// The secret called `name`: the environment variable first, then the secrets file.
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.env
            .get(name)
            .or_else(|| self.file.get(name))
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.clone()))
    }

    /// Like [`Secrets::get`], with an error naming the secret (and where it was looked for) when absent.
    pub fn require(&self, name: &str) -> Result<Secret> {
        self.get(name).ok_or_else(|| match &self.missing_file {
            Some(path) => Error::permanent(format!(
                "secret {name} is not set: export {name}=..., or create the secrets file {} \
                 (named by [secrets] file in kye.toml or KYE_SECRETS_FILE; it does not exist) \
                 with a line {name}=...",
                path.display()
            )),
            None => Error::permanent(format!(
                "secret {name} is not set: export {name}=... or add it to the secrets file \
                 ([secrets] file in kye.toml or KYE_SECRETS_FILE)"
            )),
        })
    }
}

/// Parses `NAME=value` lines. Returns (line number, reason) on a malformed line.
fn parse_dotenv(text: &str) -> std::result::Result<HashMap<String, String>, (usize, String)> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err((i + 1, "expected NAME=value".to_string()));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err((i + 1, "invalid secret name".to_string()));
        }
        let value = unquote(value.trim()).map_err(|why| (i + 1, why.to_string()))?;
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// A value as written after `=`: bare, or inside single or double quotes. A quote that is
/// never closed, or text after the closing quote other than a `# comment`, is an error: taking
/// the quote into the value would send a credential the user did not write.
fn unquote(value: &str) -> std::result::Result<&str, &'static str> {
    let Some(q) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(value);
    };
    let inner = &value[1..];
    let Some(close) = inner.find(q) else {
        return Err("the value's opening quote is never closed");
    };
    let rest = inner[close + 1..].trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err("unexpected text after the value's closing quote");
    }
    Ok(&inner[..close])
}

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
];

fn is_sensitive_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_PARAMS.contains(&lower.as_str())
        || sensitive_params()
            .read()
            .map(|p| p.contains(&lower))
            .unwrap_or(true)
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
    fn secret_is_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn env_wins_over_file_and_file_parses_quotes() {
        let dir = std::env::temp_dir().join(format!("kye-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secrets.env");
        std::fs::write(
            &f,
            "# comment\nA_TOKEN=\"from-file-a\"\nexport B_TOKEN='from-file-b'\n\nC=plain\n",
        )
        .unwrap();
        let s = Secrets::load(
            [("A_TOKEN".to_string(), "from-env-a".to_string())],
            Some(&f),
        )
        .unwrap();
        assert_eq!(s.get("A_TOKEN").unwrap().expose(), "from-env-a");
        assert_eq!(s.get("B_TOKEN").unwrap().expose(), "from-file-b");
        assert_eq!(s.get("C").unwrap().expose(), "plain");
        assert!(s.get("D").is_none());
        let err = s.require("D").unwrap_err().to_string();
        assert!(err.contains("secret D is not set"), "{err}");
        assert!(!format!("{s:?}").contains("from-file"));
        std::fs::write(&f, "oops no equals\n").unwrap();
        let err = Secrets::load(Vec::new(), Some(&f)).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unterminated_quote_is_an_error_naming_the_line() {
        for bad in ["TOKEN=\"abc\n", "TOKEN='abc\n", "TOKEN=\"ab\"c\n"] {
            let e = parse_dotenv(&format!("# first\n{bad}")).unwrap_err();
            assert_eq!(e.0, 2, "{bad:?}: {e:?}");
        }
        assert!(parse_dotenv("T=\"abc\n")
            .unwrap_err()
            .1
            .contains("never closed"));
        let ok = parse_dotenv("A=\"x y\"  # note\nB='q\"q'\nC=plain\"\n").unwrap();
        assert_eq!(ok["A"], "x y");
        assert_eq!(ok["B"], "q\"q");
        assert_eq!(ok["C"], "plain\"");
    }

    #[test]
    fn a_missing_file_matters_only_for_a_secret_found_nowhere() {
        let path = std::env::temp_dir().join(format!("kye-no-such-{}.env", std::process::id()));
        let s = Secrets::load(
            [("IN_ENV".to_string(), "from-env-1".to_string())],
            Some(&path),
        )
        .unwrap();
        assert_eq!(s.require("IN_ENV").unwrap().expose(), "from-env-1");
        let e = s.require("ELSEWHERE").unwrap_err().to_string();
        assert!(e.contains("secret ELSEWHERE is not set"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_secrets_file_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big.env");
        let mut text = "# padding\n".repeat((crate::config::MAX_TEXT_FILE as usize) / 10 + 1);
        text.push_str("TOKEN=abcd\n");
        std::fs::write(&f, text).unwrap();
        let e = Secrets::load(Vec::new(), Some(&f)).unwrap_err().to_string();
        assert!(e.contains("larger than 16 MiB"), "{e}");
    }

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
        let _s = Secret::new("s3cr3t-value-xyz");
        assert_eq!(
            redact_text("token s3cr3t-value-xyz leaked"),
            "token [redacted] leaked"
        );
        assert!(!redact_url("http://h/p/s3cr3t-value-xyz").contains("s3cr3t"));
    }

    #[test]
    fn encoded_forms_and_url_credentials_are_redacted() {
        let _s = Secret::new(r#"a b+/"\c-91f2"#);
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
