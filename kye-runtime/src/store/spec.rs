//! Choosing a store: [`StoreSpec`] from `--db`/`--store`/kye.toml text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::StoreError;

/// Which store to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// SQLite database file.
    Sqlite(PathBuf),
    /// Directory of JSON documents.
    Dir(PathBuf),
    /// A PostgreSQL database (and schema): `postgres://USER@HOST:PORT/DB?schema=NAME`.
    #[cfg(feature = "postgres")]
    Postgres(super::PgSpec),
}

impl StoreSpec {
    /// Resolves credentials the spec names from `secrets` (a PostgreSQL URL's
    /// `password_secret`, from the runtime's secrets: those given to its builder, else the
    /// environment and the secrets file); a secret found nowhere there is an error naming it.
    pub fn resolve_secrets(&mut self, secrets: &crate::secrets::Secrets) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres(pg) => pg.resolve_password(secrets),
            _ => {
                let _ = secrets;
                Ok(())
            }
        }
    }

    /// True when the spec names a credential that [`StoreSpec::resolve_secrets`] looks up.
    pub fn wants_secrets(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres(pg) => pg.password_secret.is_some(),
            _ => false,
        }
    }
}

impl Default for StoreSpec {
    /// `kye.db` in the working directory.
    fn default() -> Self {
        StoreSpec::Sqlite(PathBuf::from("kye.db"))
    }
}

impl StoreSpec {
    /// The file or directory (for PostgreSQL, the URL without its password).
    pub fn path(&self) -> &Path {
        match self {
            StoreSpec::Sqlite(p) | StoreSpec::Dir(p) => p,
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres(_) => Path::new("postgres"),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreSpec::Dir(p) => write!(f, "dir:{}", p.display()),
            #[cfg(feature = "postgres")]
            StoreSpec::Postgres(s) => write!(f, "{s}"),
        }
    }
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    /// `sqlite:PATH`, `dir:PATH`, or a plain path ending in `.db`, `.sqlite` or `.sqlite3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| StoreError::InvalidSpec {
            spec: s.to_string(),
            message: message.to_string(),
        };
        let nonempty = |p: &str| {
            if p.is_empty() {
                Err(bad("the path is empty"))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if let Some((scheme, rest)) = url_scheme(s) {
            return match scheme.to_ascii_lowercase().as_str() {
                // `sqlite:///abs/kye.db` and `sqlite://kye.db`, as database URLs are written.
                "sqlite" => Ok(StoreSpec::Sqlite(nonempty(rest)?)),
                "dir" => Ok(StoreSpec::Dir(nonempty(rest)?)),
                #[cfg(feature = "postgres")]
                "postgres" | "postgresql" => Ok(StoreSpec::Postgres(super::PgSpec::parse(s)?)),
                #[cfg(not(feature = "postgres"))]
                "postgres" | "postgresql" => Err(StoreError::InvalidSpec {
                    spec: crate::redact::redact_url(s),
                    message: format!(
                        "this kye was built without PostgreSQL (cargo feature `postgres` of \
                         kye); supported: {SUPPORTED_STORES}"
                    ),
                }),
                other => Err(bad(&format!(
                    "unknown store scheme `{other}://`; supported: {SUPPORTED_STORES}"
                ))),
            };
        }
        if let Some(p) = s.strip_prefix("sqlite:") {
            return Ok(StoreSpec::Sqlite(nonempty(p)?));
        }
        if let Some(p) = s.strip_prefix("dir:") {
            return Ok(StoreSpec::Dir(nonempty(p)?));
        }
        let lower = s.to_ascii_lowercase();
        if [".db", ".sqlite", ".sqlite3"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            return Ok(StoreSpec::Sqlite(nonempty(s)?));
        }
        Err(bad(
            "expected sqlite:PATH, dir:PATH, or a file name ending in .db, .sqlite or .sqlite3",
        ))
    }
}

/// The store forms [`StoreSpec`] accepts, for error messages.
#[cfg(not(feature = "postgres"))]
const SUPPORTED_STORES: &str = "a SQLite file (`PATH.db`, `PATH.sqlite`, `sqlite:PATH` or \
     `sqlite://PATH`) or a directory of JSON documents (`dir:PATH`)";
#[cfg(feature = "postgres")]
const SUPPORTED_STORES: &str = "a SQLite file (`PATH.db`, `PATH.sqlite`, `sqlite:PATH` or \
     `sqlite://PATH`), a directory of JSON documents (`dir:PATH`) or a PostgreSQL database \
     (`postgres://USER@HOST:PORT/DB?schema=NAME`)";

/// `scheme://rest` when `s` starts with a URL scheme (letters, digits, `+`, `-`, `.`).
fn url_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

impl StoreSpec {
    /// A store given as a command-line path: a spec (`sqlite:PATH`, `dir:PATH`, `x.db`), else
    /// any other path is a SQLite file (`--db data/pokemon`). A URL of a scheme kye does not
    /// support (`postgres://...`) is an error, never a file name.
    pub fn from_path_or_spec(text: &str) -> Result<StoreSpec, StoreError> {
        match text.parse() {
            Ok(spec) => Ok(spec),
            Err(e) if url_scheme(text).is_some() => Err(e),
            Err(_) => Ok(StoreSpec::Sqlite(PathBuf::from(text))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "sqlite:a/b".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("a/b".into())
        );
        assert_eq!(
            "x.db".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("x.db".into())
        );
        assert_eq!(
            "X.SQLITE3".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("X.SQLITE3".into())
        );
        assert_eq!(
            "dir:out".parse::<StoreSpec>().unwrap(),
            StoreSpec::Dir("out".into())
        );
        assert!("out".parse::<StoreSpec>().is_err());
        assert!("dir:".parse::<StoreSpec>().is_err());
        assert_eq!(
            "sqlite:///tmp/a.db".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            "sqlite://rel/a.db".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("rel/a.db".into())
        );
        assert_eq!(
            "dir://out".parse::<StoreSpec>().unwrap(),
            StoreSpec::Dir("out".into())
        );
        assert_eq!(
            StoreSpec::from_path_or_spec("data/pokemon").unwrap(),
            StoreSpec::Sqlite("data/pokemon".into())
        );
        #[cfg(not(feature = "postgres"))]
        for url in ["postgres://user:pw@localhost/cats", "postgresql://h/db"] {
            for e in [
                url.parse::<StoreSpec>().unwrap_err(),
                StoreSpec::from_path_or_spec(url).unwrap_err(),
            ] {
                let e = e.to_string();
                assert!(e.contains("built without PostgreSQL"), "{e}");
                assert!(e.contains("sqlite:PATH") && e.contains("dir:PATH"), "{e}");
                assert!(!e.contains(":pw@"), "{e}");
            }
        }
        #[cfg(feature = "postgres")]
        for url in [
            "postgres://user:pw@localhost/cats",
            "postgresql://user@h/cats",
        ] {
            let spec = StoreSpec::from_path_or_spec(url).unwrap();
            assert!(matches!(&spec, StoreSpec::Postgres(p) if p.database == "cats"));
            assert!(!spec.to_string().contains("pw"), "{spec}");
        }
        let e = StoreSpec::from_path_or_spec("mysql://h/cats.db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown store scheme `mysql://`"), "{e}");
        assert_eq!(StoreSpec::default(), StoreSpec::Sqlite("kye.db".into()));
    }
}
