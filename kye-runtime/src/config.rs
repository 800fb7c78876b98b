//! Configuration: an optional `kye.toml` with environment overrides.
//!
//! The file is found in this order: the path given to the runtime builder (CLI `--config`), the
//! `KYE_CONFIG` environment variable, `./kye.toml` if it exists. No file is fine: every setting
//! has a default.
//!
//! Environment variables override the file. `KYE_` followed by the key path in upper case with
//! `__` (two underscores) between levels: `KYE_POKEAPI__BASE_URL` sets `pokeapi.base_url`,
//! `KYE_RUN__CONCURRENCY` sets `run.concurrency`. Single underscores stay part of the name.
//! `KYE_CONFIG`, `KYE_SECRETS_FILE` and `KYE_LOG` are not overrides. Values from the environment
//! are strings; the typed getters parse them (`"20"` is a valid `u64`, `"250ms"` a valid duration).
//!
//! Keys are looked up with dots between levels. A quoted table name that contains dots
//! (`[hosts."api.example.com"]`) is found too: `hosts.api.example.com.rate_limit`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::exec::{CallPolicy, ExecSettings};

/// The largest schema (`.kye`), configuration (`kye.toml`) or secrets file kye reads: 16 MiB.
/// Such files are written by people; anything larger (or endless, like `/dev/zero`) is a
/// mistake, refused before it fills memory.
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// Reads a schema, configuration or secrets file as UTF-8 text, refusing one larger than
/// [`MAX_TEXT_FILE`] (checked while reading, so a device or pipe that never ends is refused
/// too).
pub fn read_text_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_TEXT_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is larger than {} MiB, the limit for schema, configuration and \
                 secrets files",
                MAX_TEXT_FILE >> 20
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not valid UTF-8 text",
        )
    })
}

/// Environment variables with the `KYE_` prefix that are not configuration overrides.
pub const RESERVED_ENV: &[&str] = &["KYE_CONFIG", "KYE_SECRETS_FILE", "KYE_LOG"];

/// Loaded configuration: the `kye.toml` table with environment overrides applied.
#[derive(Debug, Clone, Default)]
pub struct Config {
    root: toml::Table,
    origin: Option<PathBuf>,
    /// Dotted keys set after the file was read (environment, [`Config::set`]): their paths are
    /// relative to the working directory, not to the file.
    overridden: std::collections::HashSet<String>,
}

impl Config {
    /// An empty configuration (all defaults).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses TOML text. `origin` names the file in error messages.
    pub fn from_toml_str(text: &str, origin: Option<&Path>) -> Result<Self> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let place = origin
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "configuration".to_string());
            Error::permanent(format!("{place}: invalid TOML: {}", e.message().trim()))
        })?;
        Ok(Config {
            root,
            origin: origin.map(Path::to_path_buf),
            overridden: Default::default(),
        })
    }

    /// Reads a `kye.toml` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text_file(path).map_err(|e| {
            Error::permanent(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::from_toml_str(&text, Some(path))
    }

    /// Finds and loads the configuration: `explicit` if given (it must exist), else the file named
    /// by `KYE_CONFIG` in `env`, else `./kye.toml` when present; then applies the `KYE_*`
    /// overrides from `env`.
    pub fn discover(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let from_env = env
            .iter()
            .find(|(k, _)| k == "KYE_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        let mut config = match explicit.map(Path::to_path_buf).or(from_env) {
            Some(path) => Self::from_file(&path)?,
            None => {
                let default = Path::new("kye.toml");
                if default.is_file() {
                    Self::from_file(default)?
                } else {
                    Self::empty()
                }
            }
        };
        config.apply_env(env);
        Ok(config)
    }

    /// The file this configuration came from, if any.
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    /// Applies `KYE_A__B=value` overrides (see the module docs).
    pub fn apply_env(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("KYE_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                continue;
            }
            self.set_path(&path, toml::Value::String(value));
        }
    }

    /// Sets a value by dotted key (creating tables on the way). Mostly for tests and builders.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        self.set_path(&path, value.into());
    }

    fn set_path(&mut self, path: &[String], value: toml::Value) {
        self.overridden.insert(path.join("."));
        let mut table = &mut self.root;
        for (i, seg) in path.iter().enumerate() {
            if i + 1 == path.len() {
                table.insert(seg.clone(), value);
                return;
            }
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            let toml::Value::Table(t) = entry else {
                return;
            };
            table = t;
        }
    }

    /// The value at `key` as a file path. A relative path written in `kye.toml` is relative
    /// to that file's directory (so `--config sub/kye.toml` finds `sub/.secrets`); one set by
    /// the environment or [`Config::set`] is relative to the working directory.
    pub fn get_path(&self, key: &str) -> Option<PathBuf> {
        self.get_str(key)
            .map(|text| self.resolve(key, Path::new(&text)))
    }

    /// `path`, read from `key`, made relative to the configuration file when it came from it
    /// (see [`Config::get_path`]).
    pub fn resolve(&self, key: &str, path: &Path) -> PathBuf {
        match self.origin.as_deref().and_then(Path::parent) {
            Some(dir) if path.is_relative() && !self.overridden.contains(key) => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The `store` setting as a store spec, its path resolved like [`Config::get_path`].
    pub fn store_spec(&self) -> Option<std::result::Result<crate::store::StoreSpec, String>> {
        use crate::store::StoreSpec;
        let text = self.get_str("store")?;
        Some(
            text.parse::<StoreSpec>()
                .map(|spec| match spec {
                    StoreSpec::Sqlite(p) => StoreSpec::Sqlite(self.resolve("store", &p)),
                    StoreSpec::Dir(p) => StoreSpec::Dir(self.resolve("store", &p)),
                    #[allow(unreachable_patterns)]
                    other => other,
                })
                .map_err(|e| format!("{e} (the `store` setting)")),
        )
    }

    /// The raw value at a dotted key.
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        let segs: Vec<&str> = key.split('.').collect();
        lookup(&self.root, &segs)
    }

    /// The table at a dotted key (e.g. `hosts` or `fetchers`).
    pub fn table(&self, key: &str) -> Option<&toml::Table> {
        self.get(key).and_then(toml::Value::as_table)
    }

    /// The value at `key` as text: strings as they are, numbers and booleans printed.
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Datetime(d) => Some(d.to_string()),
            _ => None,
        }
    }

    /// The value at `key` deserialized as `T`. A string value (e.g. from the environment) is also
    /// tried as a TOML literal, so `KYE_RUN__CONCURRENCY=8` reads as the integer 8.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value_as(value)
            .map(Some)
            .map_err(|why| self.bad(key, value, &why))
    }

    /// The value at `key` as an unsigned integer.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get_as(key)
    }

    /// The value at `key` as a float (integers accepted).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value {
            toml::Value::Integer(i) => Ok(Some(*i as f64)),
            toml::Value::Float(f) => Ok(Some(*f)),
            toml::Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|e| self.bad(key, value, &e.to_string())),
            _ => Err(self.bad(key, value, "expected a number")),
        }
    }

    /// The value at `key` as a boolean (`true`/`false`, also `1`/`0`/`yes`/`no` from the environment).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value {
            toml::Value::Boolean(b) => Ok(Some(*b)),
            toml::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(self.bad(key, value, "expected true or false")),
            },
            _ => Err(self.bad(key, value, "expected true or false")),
        }
    }

    /// The value at `key` as a duration: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, or a number
    /// of seconds.
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let parsed = match value {
            toml::Value::Integer(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
            toml::Value::Float(f) => Duration::try_from_secs_f64(*f).map_err(|e| e.to_string()),
            toml::Value::String(s) => crate::duration::parse(s),
            _ => Err("expected a duration such as \"30s\" or \"250ms\"".to_string()),
        };
        parsed.map(Some).map_err(|why| self.bad(key, value, &why))
    }

    /// The value at `key` as a size in bytes: `"32MiB"`, `"512KiB"`, `"10MB"`, or a number of bytes.
    pub fn get_size(&self, key: &str) -> Result<Option<u64>> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let parsed = match value {
            toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
            toml::Value::String(s) => parse_size(s),
            _ => Err("expected a size such as \"32MiB\"".to_string()),
        };
        parsed.map(Some).map_err(|why| self.bad(key, value, &why))
    }

    fn bad(&self, key: &str, value: &toml::Value, why: &str) -> Error {
        let place = self
            .origin
            .as_ref()
            .map(|p| format!(" (in {} or KYE_* environment)", p.display()))
            .unwrap_or_default();
        let shown = match value {
            toml::Value::String(s) => format!("{s:?}"),
            toml::Value::Table(_) => "a table".to_string(),
            toml::Value::Array(_) => "an array".to_string(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
        };
        Error::permanent(format!(
            "config key {key}{place}: invalid value {shown}: {why}"
        ))
    }
}

fn lookup<'a>(table: &'a toml::Table, segs: &[&str]) -> Option<&'a toml::Value> {
    // Longest prefix first, so quoted keys with dots are found.
    for n in (1..=segs.len()).rev() {
        let key = segs[..n].join(".");
        if let Some(v) = table.get(&key) {
            if n == segs.len() {
                return Some(v);
            }
            if let Some(t) = v.as_table() {
                if let Some(found) = lookup(t, &segs[n..]) {
                    return Some(found);
                }
            }
        }
    }
    None
}

pub(crate) fn value_as<T: DeserializeOwned>(value: &toml::Value) -> std::result::Result<T, String> {
    match T::deserialize(value.clone()) {
        Ok(v) => Ok(v),
        Err(first) => {
            if let toml::Value::String(s) = value {
                let doc = format!("v = {s}");
                if let Ok(mut t) = doc.parse::<toml::Table>() {
                    if let Some(v) = t.remove("v") {
                        if let Ok(v) = T::deserialize(v) {
                            return Ok(v);
                        }
                    }
                }
            }
            Err(first.to_string().trim().to_string())
        }
    }
}

/// Parses `"32MiB"`, `"512KiB"`, `"1GiB"`, `"10MB"`, `"10kB"` or a bare number of bytes.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size such as \"32MiB\", got {text:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, kB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_string())
}

// ---------------------------------------------------------------------------------------------
// The executor's settings: it is handed them and never reads the configuration itself.

impl ExecSettings {
    /// Reads `[run]` and `[fetchers."<name>"]`; errors name the key.
    ///
    /// Settings (global under `[run]`, per fetcher under `[fetchers."<name>"]`, which wins):
    ///
    /// | key              | default  | meaning                                                        |
    /// |------------------|----------|----------------------------------------------------------------|
    /// | `concurrency`    | 16       | items in flight (global); per fetcher: at most this many of its calls at once (default: no extra limit) |
    /// | `timeout`        | `"30s"`  | one HTTP request made through the context, from sending (after any rate-limit wait) to the end of the body |
    /// | `call_timeout`   | `"5m"`   | one whole call of the fetcher (all its requests and waits); catches fetchers that hang |
    /// | `max_attempts`   | 4        | tries per key (1 = no retry); only retryable errors are retried |
    /// | `backoff_base`   | `"500ms"`| delay before the 2nd try; doubles each time, with jitter        |
    /// | `backoff_max`    | `"30s"`  | longest delay between tries (a longer `Retry-After` still wins, up to `max_retry_after`) |
    /// | `max_retry_after`| `"5m"`   | (global) longest pause a `Retry-After` may impose               |
    /// | `grace_period`   | `"10s"`  | (global) after Ctrl-C, how long in-flight calls may finish      |
    pub fn from_config(config: &Config) -> Result<Self> {
        let mut s = ExecSettings::default();
        if let Some(c) = config.get_u64("run.concurrency")? {
            s.concurrency = (c as usize).max(1);
        }
        if let Some(g) = config.get_duration("run.grace_period")? {
            s.grace_period = g;
        }
        s.default_policy = read_policy(config, "run", &CallPolicy::default())?;
        s.default_policy.concurrency = None;
        if let Some(fetchers) = config.table("fetchers") {
            for name in fetchers.keys() {
                let p = read_policy(config, &format!("fetchers.{name}"), &s.default_policy)?;
                s.fetchers.insert(name.clone(), p);
            }
        }
        Ok(s)
    }
}

fn read_policy(config: &Config, prefix: &str, base: &CallPolicy) -> Result<CallPolicy> {
    let mut p = base.clone();
    if let Some(t) = config.get_duration(&format!("{prefix}.call_timeout"))? {
        p.call_timeout = t;
    }
    if let Some(a) = config.get_u64(&format!("{prefix}.max_attempts"))? {
        p.max_attempts = (a as u32).max(1);
    }
    if let Some(b) = config.get_duration(&format!("{prefix}.backoff_base"))? {
        p.backoff.base = b;
    }
    if let Some(m) = config.get_duration(&format!("{prefix}.backoff_max"))? {
        p.backoff.max = m;
    }
    if let Some(m) = config.get_duration(&format!("{prefix}.max_retry_after"))? {
        p.backoff.max_retry_after = m;
    }
    if let Some(c) = config.get_u64(&format!("{prefix}.concurrency"))? {
        p.concurrency = Some((c as usize).max(1));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_file_and_typed_getters_parse_strings() {
        let mut c = Config::from_toml_str(
            r#"
            [pokeapi]
            base_url = "https://pokeapi.co/api/v2"
            [run]
            concurrency = 4
            timeout = "2s"
            [hosts."api.example.com"]
            rate_limit = 2.5
            "#,
            None,
        )
        .unwrap();
        c.apply_env(env(&[
            ("KYE_POKEAPI__BASE_URL", "http://127.0.0.1:9/api"),
            ("KYE_RUN__CONCURRENCY", "8"),
            ("KYE_CONFIG", "ignored.toml"),
            ("OTHER", "x"),
        ]));
        assert_eq!(
            c.get_str("pokeapi.base_url").as_deref(),
            Some("http://127.0.0.1:9/api")
        );
        assert_eq!(c.get_u64("run.concurrency").unwrap(), Some(8));
        assert_eq!(c.get_as::<u32>("run.concurrency").unwrap(), Some(8));
        assert_eq!(
            c.get_duration("run.timeout").unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            c.get_f64("hosts.api.example.com.rate_limit").unwrap(),
            Some(2.5)
        );
        assert!(c.get("config").is_none());
        assert!(c.get("nope.nothing").is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        let c = Config::from_toml_str(
            "[run]\nconcurrency = \"lots\"\ntimeout = \"3 fortnights\"",
            None,
        )
        .unwrap();
        let e = c.get_u64("run.concurrency").unwrap_err().to_string();
        assert!(e.contains("run.concurrency") && e.contains("lots"), "{e}");
        let e = c.get_duration("run.timeout").unwrap_err().to_string();
        assert!(e.contains("run.timeout"), "{e}");
        let e = Config::from_toml_str("[run\n", Some(Path::new("kye.toml")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("kye.toml: invalid TOML"), "{e}");
    }

    #[test]
    fn paths_in_the_file_are_relative_to_it() {
        let mut c = Config::from_toml_str(
            "store = \"sqlite:data/c.db\"\n[secrets]\nfile = \".secrets\"\n[a]\nabs = \"/etc/x\"",
            Some(Path::new("catsource/kye.toml")),
        )
        .unwrap();
        assert_eq!(
            c.get_path("secrets.file"),
            Some(PathBuf::from("catsource/.secrets"))
        );
        assert_eq!(c.get_path("a.abs"), Some(PathBuf::from("/etc/x")));
        assert_eq!(
            c.store_spec().unwrap().unwrap(),
            crate::store::StoreSpec::Sqlite("catsource/data/c.db".into())
        );
        // The environment's paths are the working directory's.
        c.apply_env([("KYE_SECRETS__FILE".to_string(), "mine.env".to_string())]);
        assert_eq!(c.get_path("secrets.file"), Some(PathBuf::from("mine.env")));
        // No file: paths as written.
        let c = Config::from_toml_str("store = \"dir:out\"", None).unwrap();
        assert_eq!(
            c.store_spec().unwrap().unwrap(),
            crate::store::StoreSpec::Dir("out".into())
        );
    }

    #[test]
    fn a_config_file_over_the_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kye.toml");
        std::fs::write(&f, "# padding\n".repeat(MAX_TEXT_FILE as usize / 10 + 1)).unwrap();
        let e = Config::from_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("cannot read config file") && e.contains("larger than 16 MiB"),
            "{e}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("10kB").unwrap(), 10_000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("12 parsecs").is_err());
    }
}
