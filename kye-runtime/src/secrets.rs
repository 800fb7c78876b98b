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
//! Every secret value read through [`Secrets`] is also remembered by the process-wide redactor
//! ([`crate::redact`]), which replaces such values with `[redacted]`; the runtime runs it over
//! error messages before they are logged or stored.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::redact::{register_sensitive_value, REDACTED};

/// A secret value. `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value and registers it with the redactor: from then on every text kye writes
    /// (errors, logs, stored reasons) shows it as `[redacted]`.
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        register_sensitive_value(&value);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
        // The value is redacted wherever it shows up in text.
        assert_eq!(
            crate::redact::redact_text("token hunter2-very-secret leaked"),
            "token [redacted] leaked"
        );
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
}
