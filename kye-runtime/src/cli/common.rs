//! What the data subcommands share: the store and runtime from the global flags, error
//! paragraphs, tables.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::report::{paint, RED};

/// `println!` that ignores a closed stdout (`kye show ... | head` must not panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
use super::{Format, Global, EXIT_USAGE};
use crate::config::Config;
use crate::runtime::{RuntimeBuilder, DEFAULT_STORE};
use crate::store::{open_store_read_only, StoreRead, StoreSpec};

/// The configuration the global flags select: `--config` (or `KYE_CONFIG`, or `./kye.toml`),
/// the `KYE_*` environment, then the binary's own overrides.
pub fn load_config(g: &Global) -> crate::Result<Config> {
    let mut config = Config::discover(g.config.as_deref(), std::env::vars())?;
    for (key, value) in &g.config_overrides {
        config.set(key, value.as_str());
    }
    Ok(config)
}

/// The store the global flags select: `--db` (a SQLite file, `sqlite:PATH` or `dir:PATH`),
/// else `store` in the configuration, else `kye.db`. A password the spec names as a kye
/// secret (`password_secret=`) is taken from where every other secret comes from: the
/// environment, then the secrets file (`KYE_SECRETS_FILE`, else kye.toml's `secrets.file`).
pub fn store_spec(g: &Global) -> crate::Result<StoreSpec> {
    let mut config = None;
    let mut spec = match &g.db {
        Some(p) => StoreSpec::from_path_or_spec(&p.to_string_lossy())
            .map_err(|e| crate::Error::permanent(format!("{e} (the --db flag)")))?,
        None => match config.insert(load_config(g)?).store_spec() {
            Some(spec) => spec.map_err(crate::Error::permanent)?,
            None => DEFAULT_STORE
                .parse()
                .map_err(|e| crate::Error::permanent(format!("{e}")))?,
        },
    };
    if spec.wants_secrets() {
        let config = match config {
            Some(c) => c,
            None => load_config(g)?,
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        let secrets = crate::runtime::load_secrets(&env, &config)?;
        spec.resolve_secrets(&secrets)
            .map_err(|e| crate::Error::permanent(e.to_string()))?;
    }
    Ok(spec)
}

/// A [`RuntimeBuilder`] with the store and configuration of the global flags.
pub fn runtime_builder(g: &Global) -> crate::Result<RuntimeBuilder> {
    let spec = store_spec(g)?;
    Ok(crate::runtime::Runtime::builder()
        .config(load_config(g)?)
        .store_spec(spec))
}

/// Opens the store of the global flags for reading (works while a fetch writes to it).
pub fn open_reader(g: &Global) -> crate::Result<Box<dyn StoreRead>> {
    let spec = store_spec(g)?;
    open_store_read_only(&spec).map_err(crate::Error::other)
}

/// A tokio runtime for the subcommands that fetch.
pub(crate) fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Prints an error paragraph (`error: what ... what to do`) to stderr and returns `code`.
/// With `-v` the chain of causes follows.
pub(crate) fn fail(g: &Global, error: &dyn std::error::Error, code: u8) -> ExitCode {
    eprintln!("{}", error_paragraph(g, error));
    ExitCode::from(code)
}

/// [`fail`] for a message without a cause chain.
pub(crate) fn fail_msg(g: &Global, message: &str, code: u8) -> ExitCode {
    eprintln!("{}: {message}", paint("error", RED, g.color_err));
    ExitCode::from(code)
}

pub(crate) fn error_paragraph(g: &Global, error: &dyn std::error::Error) -> String {
    let mut out = format!("{}: {error}", paint("error", RED, g.color_err));
    let mut source = error.source();
    if g.verbose > 0 {
        while let Some(s) = source {
            let _ = write!(out, "\n  caused by: {s}");
            source = s.source();
        }
    } else if let Some(s) = source {
        // The first cause often says the essential thing (the I/O or SQLite error).
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
    }
    out
}

/// The usual failure of a data subcommand before it does anything: configuration, store.
pub(crate) fn setup_failed(g: &Global, error: &crate::Error) -> ExitCode {
    fail(g, error, EXIT_USAGE)
}

/// Prints `value` as one JSON document on stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// What to do about a failed key, from its reason (the runtime's error text).
pub(crate) fn failure_hint(reason: &str) -> Option<&'static str> {
    if reason.contains("HTTP 401") || reason.contains("HTTP 403") {
        Some("the source refused the request: configure authentication for its host in kye.toml ([hosts.\"HOST\".auth], see docs/running.md)")
    } else if reason.contains("HTTP 429") {
        Some("the source is rate limiting: lower --concurrency or set rate_limit for its host in kye.toml")
    } else if reason.contains("timed out") || reason.contains("connect") {
        Some("the source did not answer: check the network and the base URL, or raise timeout in kye.toml")
    } else {
        None
    }
}

/// [`failure_hint`], knowing the configuration: a 401 or 403 from a host (or for a fetcher of
/// `model`) that already has authentication configured means the credential was refused, and
/// the hint names the secret to check instead of saying to configure authentication.
pub(crate) fn failure_hint_with(
    config: Option<&Config>,
    model: &str,
    reason: &str,
) -> Option<String> {
    if reason.contains("HTTP 401") || reason.contains("HTTP 403") {
        if let Some((place, secrets)) = config.and_then(|c| configured_auth(c, model, reason)) {
            return Some(format!(
                "the source refused the credential kye sent ({place} in kye.toml, secret {secrets}): \
                 check that the secret holds a valid, unexpired value with access to this resource"
            ));
        }
    }
    failure_hint(reason).map(str::to_string)
}

/// The authentication configured for a failed request: the `[fetchers."<model>...".auth]` of a
/// fetcher of `model`, else the `[hosts."HOST".auth]` of the URL at the end of `reason`
/// (`host:port` before `host`). Returns where it is configured and the name(s) of its secrets.
fn configured_auth(config: &Config, model: &str, reason: &str) -> Option<(String, String)> {
    let secrets_of = |auth: &toml::Value| -> Option<String> {
        let t = auth.as_table()?;
        let names: Vec<&str> = ["username_secret", "secret"]
            .iter()
            .filter_map(|k| t.get(*k).and_then(toml::Value::as_str))
            .collect();
        (!names.is_empty()).then(|| names.join(" and "))
    };
    if let Some(fetchers) = config.table("fetchers") {
        for (name, entry) in fetchers {
            let of_model = name
                .strip_prefix(model)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('('));
            if let (true, Some(auth)) = (of_model, entry.get("auth")) {
                if let Some(names) = secrets_of(auth) {
                    return Some((format!("[fetchers.\"{name}\".auth]"), names));
                }
            }
        }
    }
    let start = reason
        .rfind("(http://")
        .or_else(|| reason.rfind("(https://"))?;
    let url = reason[start + 1..].trim_end().trim_end_matches(')');
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?;
    let hosts = config.table("hosts")?;
    let mut names = Vec::new();
    if let Some(port) = url.port_or_known_default() {
        names.push(format!("{host}:{port}"));
    }
    names.push(host.to_string());
    names.into_iter().find_map(|name| {
        let auth = hosts.get(&name)?.get("auth")?;
        Some((format!("[hosts.\"{name}\".auth]"), secrets_of(auth)?))
    })
}

/// A JSON value as one table cell: strings bare, arrays comma-joined, records by their key.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(obj) => {
            // A nested record: show its name or id, the usual keys.
            for k in ["name", "id", "key"] {
                if let Some(x) = obj.get(k) {
                    return cell(x);
                }
            }
            Value::Object(obj.clone()).to_string()
        }
        other => other.to_string(),
    }
}

/// A table for people (`Format::Text`) or Markdown.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Longest cell shown in a text table (Markdown tables are not cut).
const CELL_MAX: usize = 40;

fn cut(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl Table {
    pub(crate) fn new<I, S>(headers: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, format: Format) -> String {
        match format {
            Format::Markdown => self.markdown(),
            _ => self.text(),
        }
    }

    fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| text_cell(c)).collect())
            .collect();
        let mut widths = text_widths(&self.headers);
        for r in &rows {
            widen(&mut widths, r);
        }
        let mut out = text_header(&widths, &self.headers);
        for r in &rows {
            out.push_str(&text_line(&widths, r));
            out.push('\n');
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = markdown_header(&self.headers);
        for r in &self.rows {
            let _ = writeln!(out, "{}", markdown_row(r));
        }
        out
    }
}

/// A cell as a text table shows it: on one line, cut to [`CELL_MAX`] characters.
pub(crate) fn text_cell(s: &str) -> String {
    cut(s, CELL_MAX)
}

/// Column widths of a text table with these headers and no rows yet.
pub(crate) fn text_widths(headers: &[String]) -> Vec<usize> {
    headers.iter().map(|h| h.chars().count()).collect()
}

/// Widens `widths` to fit a row of [`text_cell`]s.
pub(crate) fn widen(widths: &mut [usize], row: &[String]) {
    for (w, c) in widths.iter_mut().zip(row) {
        *w = (*w).max(c.chars().count());
    }
}

/// The header line and the rule under it, each ending in a newline.
pub(crate) fn text_header(widths: &[usize], headers: &[String]) -> String {
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    format!(
        "{}\n{}\n",
        text_line(widths, headers),
        text_line(widths, &rule)
    )
}

/// One line of a text table (no newline): cells padded to `widths`, two spaces apart.
pub(crate) fn text_line(widths: &[usize], cells: &[String]) -> String {
    let mut s = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            s.push_str("  ");
        }
        let w = widths.get(i).copied().unwrap_or(0);
        let pad = w.saturating_sub(c.chars().count());
        s.push_str(c);
        if i + 1 < cells.len() {
            s.push_str(&" ".repeat(pad));
        }
    }
    s.trim_end().to_string()
}

fn markdown_escape(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The header line and separator of a Markdown table, each ending in a newline.
pub(crate) fn markdown_header(headers: &[String]) -> String {
    format!(
        "| {} |\n|{}|\n",
        headers
            .iter()
            .map(|h| markdown_escape(h))
            .collect::<Vec<_>>()
            .join(" | "),
        headers
            .iter()
            .map(|_| " --- ")
            .collect::<Vec<_>>()
            .join("|")
    )
}

/// One row of a Markdown table (no newline).
pub(crate) fn markdown_row(cells: &[String]) -> String {
    format!(
        "| {} |",
        cells
            .iter()
            .map(|c| markdown_escape(c))
            .collect::<Vec<_>>()
            .join(" | ")
    )
}

/// Where a store lives, for messages: `kye.db` or `dir:out`.
pub(crate) fn describe_store(kind: &str, location: &Path) -> String {
    match kind {
        "dir" => format!("dir:{}", location.display()),
        _ => location.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_show_values_as_people_read_them() {
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!("pikachu")), "pikachu");
        assert_eq!(cell(&json!(60.0)), "60.0");
        assert_eq!(cell(&json!(["grass", "poison"])), "grass, poison");
        assert_eq!(
            cell(&json!([{"name": "grass", "generation": "generation-i"}])),
            "grass"
        );
    }

    #[test]
    fn failures_get_a_hint_when_the_cause_is_known() {
        assert!(failure_hint("HTTP 403 Forbidden: no (http://x/1)")
            .unwrap()
            .contains("authentication"));
        assert!(failure_hint("HTTP 429 Too Many Requests")
            .unwrap()
            .contains("rate"));
        assert_eq!(failure_hint("fetcher panicked"), None);
    }

    #[test]
    fn a_refused_credential_is_named_when_auth_is_configured() {
        let config = Config::from_toml_str(
            r#"
            [hosts."127.0.0.1:8080".auth]
            type = "bearer"
            secret = "CAT_TOKEN"
            [fetchers."Dog.id".auth]
            type = "basic"
            username_secret = "DOG_USER"
            secret = "DOG_PASSWORD"
            "#,
            None,
        )
        .unwrap();
        let reason = "HTTP 401 Unauthorized: bad token (http://127.0.0.1:8080/cats/1)";
        let hint = failure_hint_with(Some(&config), "Cat", reason).unwrap();
        assert!(hint.contains("refused the credential"), "{hint}");
        assert!(hint.contains("[hosts.\"127.0.0.1:8080\".auth]"), "{hint}");
        assert!(hint.contains("secret CAT_TOKEN"), "{hint}");
        assert!(!hint.contains("configure authentication"), "{hint}");
        let hint =
            failure_hint_with(Some(&config), "Dog", "HTTP 403 Forbidden (http://x/1)").unwrap();
        assert!(hint.contains("DOG_USER and DOG_PASSWORD"), "{hint}");
        // No authentication for that host: the old advice.
        let other = "HTTP 401 Unauthorized (http://127.0.0.1:9090/cats/1)";
        let hint = failure_hint_with(Some(&config), "Cat", other).unwrap();
        assert!(hint.contains("configure authentication"), "{hint}");
        let hint = failure_hint_with(None, "Cat", reason).unwrap();
        assert!(hint.contains("configure authentication"), "{hint}");
    }

    #[test]
    fn tables_align_and_cut_long_cells() {
        let mut t = Table::new(["id", "name"]);
        t.row(vec!["1".into(), "bulbasaur".into()]);
        t.row(vec!["25".into(), "x".repeat(60)]);
        let text = t.render(Format::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id  name");
        assert_eq!(lines[2], "1   bulbasaur");
        assert!(lines[3].ends_with('…'));
        assert_eq!(lines[3].chars().count(), 4 + CELL_MAX);
        let md = t.render(Format::Markdown);
        assert!(md.starts_with("| id | name |\n| --- | --- |\n| 1 | bulbasaur |\n"));
    }
}
