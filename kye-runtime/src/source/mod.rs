//! Sources as packages (step: registry): what a source declares with `kye::source!` (its
//! hosts, configuration keys, secrets and how each secret is sent, an optional probe) and
//! which fetchers, listers and transformers belong to it.
//!
//! The declarations are collected by `inventory` like fetchers. [`Sources`] is the checked set
//! a [`crate::Registry`] holds; [`SourceEnv`] (in `env.rs`) is one source's view of the
//! configuration and secrets at run time (what `ctx.config::<T>` and `ctx.secret` read),
//! `check.rs` is `kye sources check` and `listing.rs` what `kye sources` prints.

mod check;
mod env;
mod listing;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use check::{CheckOutcome, SourceCheck, SourcesReport};
pub(crate) use env::auth_of;
pub use env::{ConfigStatus, SecretStatus, SourceEnv};
pub use listing::{ConfigListing, SecretListing, SourceListing, SourcesListing};

/// Names a source's configuration cannot take: kye's own sections of kye.toml (a source's
/// values live in the table named after it, `[pokeapi] base_url = ...`).
pub const RESERVED_SOURCE_NAMES: &[&str] = &[
    "run",
    "http",
    "hosts",
    "fetchers",
    "store",
    "secrets",
    "serve",
    "server",
    "queue",
    "sources",
    "transform",
    "transformers",
    "log",
    "kye",
    "roles",
    "freshness",
    "auth",
];

/// A source declared by `kye::source!` (generated code builds these).
pub struct SourceRegistration {
    /// The source's name (`pokeapi`): its table in kye.toml and its name in provenance.
    pub name: &'static str,
    /// One line saying what it is.
    pub description: &'static str,
    /// The Cargo package that declares it (`CARGO_PKG_NAME`).
    pub crate_name: &'static str,
    /// That package's version (`CARGO_PKG_VERSION`), stored with every record it produces.
    pub version: &'static str,
    /// The hosts it talks to (`api.example.com`, or `host:port`): its authentication is sent
    /// to these and no others.
    pub hosts: &'static [&'static str],
    /// Its configuration keys.
    pub config: &'static [ConfigKey],
    /// Its secrets.
    pub secrets: &'static [SecretKey],
    /// A cheap request `kye sources check` makes with the configured credentials.
    pub probe: Option<Probe>,
    /// `module_path!()` of the declaration.
    pub module_path: &'static str,
    /// Rust source file of the declaration.
    pub file: &'static str,
    /// Line of the declaration.
    pub line: u32,
}

inventory::collect!(SourceRegistration);

impl fmt::Debug for SourceRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceRegistration")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("hosts", &self.hosts)
            .field("config", &self.config)
            .field("secrets", &self.secrets)
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

impl SourceRegistration {
    /// `name@version`, as provenance stores it.
    pub fn name_version(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// `file:line` of the declaration.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The declared configuration key `name`.
    pub fn config_key(&self, name: &str) -> Option<&'static ConfigKey> {
        self.config.iter().find(|k| k.name == name)
    }

    /// The declared secret `name`.
    pub fn secret(&self, name: &str) -> Option<&'static SecretKey> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// Whether `host` is declared with `port` written out (`api.example:8080`), rather than
    /// by name alone.
    pub fn declares_port(&self, host: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| match h.rsplit_once(':') {
            Some((name, p)) => {
                name.eq_ignore_ascii_case(host)
                    && p.parse::<u16>().ok().is_some_and(|p| Some(p) == port)
            }
            None => false,
        })
    }

    /// Whether a request to `host` (and `port`) goes to one of the declared hosts.
    pub fn talks_to(&self, host: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| match h.rsplit_once(':') {
            Some((name, p)) if p.parse::<u16>().is_ok() => {
                name.eq_ignore_ascii_case(host) && p.parse::<u16>().ok() == port
            }
            _ => h.eq_ignore_ascii_case(host),
        })
    }
}

/// A configuration key a source declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigKey {
    /// Its name inside the source's table (`base_url`).
    pub name: &'static str,
    /// The type of its value.
    pub kind: ConfigKind,
    /// The default, as a TOML literal (`"https://pokeapi.co/api/v2"`, `100`).
    pub default: Option<&'static str>,
    /// Whether it may stay unset (no default, no value: `None` to a fetcher).
    pub optional: bool,
    /// What it is for.
    pub description: &'static str,
}

impl ConfigKey {
    /// Whether a value must be configured (no default and not optional).
    pub fn required(&self) -> bool {
        self.default.is_none() && !self.optional
    }
}

/// The type of a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// Any text.
    String,
    /// An absolute `http` or `https` URL.
    Url,
    /// A whole number.
    Integer,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl ConfigKind {
    /// The name used in declarations and listings (`string`, `url`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::String => "string",
            ConfigKind::Url => "url",
            ConfigKind::Integer => "integer",
            ConfigKind::Number => "number",
            ConfigKind::Boolean => "boolean",
        }
    }

    /// Checks a configured value, as kye.toml gives it (environment overrides arrive as
    /// text: `"8"` is an integer). The message never contains the value.
    pub fn check(self, value: &toml::Value) -> Result<(), String> {
        let text = value.as_str();
        let ok = match self {
            ConfigKind::String => text.is_some(),
            ConfigKind::Url => match text.map(reqwest::Url::parse) {
                Some(Ok(url)) => matches!(url.scheme(), "http" | "https") && url.has_host(),
                _ => false,
            },
            ConfigKind::Integer => {
                value.as_integer().is_some()
                    || text.is_some_and(|t| t.trim().parse::<i64>().is_ok())
            }
            ConfigKind::Number => {
                value.as_integer().is_some()
                    || value.as_float().is_some()
                    || text.is_some_and(|t| t.trim().parse::<f64>().is_ok())
            }
            ConfigKind::Boolean => {
                value.as_bool().is_some() || matches!(text.map(str::trim), Some("true" | "false"))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                ConfigKind::Url => "expected an absolute http(s) URL".to_string(),
                kind => format!("expected a value of type {}", kind.as_str()),
            })
        }
    }
}

/// A secret a source declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKey {
    /// Its name (`CATAPI_TOKEN`): the environment variable, the line of the secrets file, the
    /// name of a sealed secret.
    pub name: &'static str,
    /// How kye sends it to the source's hosts.
    pub send: SendAs,
    /// Whether the source works without it (nothing is sent when unset).
    pub optional: bool,
    /// What it is for.
    pub description: &'static str,
}

/// How a declared secret is sent (applied by kye's HTTP client to the source's hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAs {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// A header carrying the secret (`X-Api-Key`).
    Header(&'static str),
    /// A query parameter carrying the secret (`appid`).
    Query(&'static str),
    /// HTTP basic authentication with the secret as the password.
    Basic {
        /// The user name.
        username: BasicUser,
    },
    /// Not sent by kye: the fetcher reads it with `ctx.secret` (signing keys and the like).
    Fetcher,
}

/// The user name of basic authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicUser {
    /// Written in the declaration.
    Literal(&'static str),
    /// Read from one of the source's configuration keys.
    Config(&'static str),
}

impl fmt::Display for SendAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendAs::Bearer => f.write_str("bearer"),
            SendAs::Header(h) => write!(f, "header {h}"),
            SendAs::Query(q) => write!(f, "query {q}"),
            SendAs::Basic {
                username: BasicUser::Literal(u),
            } => write!(f, "basic (user {u})"),
            SendAs::Basic {
                username: BasicUser::Config(k),
            } => write!(f, "basic (user from {k})"),
            SendAs::Fetcher => f.write_str("read by the fetchers"),
        }
    }
}

/// A source's probe: a cheap request `kye sources check` makes with the configured credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// One known key, as a request (`Pokemon.id = 1`): fetched by its fetcher, never stored.
    Key(&'static str),
    /// `GET` of a URL; `{key}` is replaced by the source's configuration value
    /// (`{base_url}/health`).
    Get(&'static str),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Key(r) => f.write_str(r),
            Probe::Get(u) => write!(f, "GET {u}"),
        }
    }
}

/// What kind of function belongs to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberKind {
    /// A fetcher (`#[kye::get]`).
    Fetcher,
    /// A list function (`#[kye::list]`).
    Lister,
    /// A transformer (`#[kye::transform]`).
    Transformer,
}

/// A fetcher, lister or transformer naming its source (`source = cats`): generated code
/// builds these beside the function's own registration.
#[derive(Debug)]
pub struct SourceMember {
    /// The source's name.
    pub source: &'static str,
    /// What the function is.
    pub kind: MemberKind,
    /// The model it fetches, lists or produces.
    pub model: &'static str,
    /// The index edges of a fetcher or lister (empty for a transformer).
    pub identifier: &'static [&'static str],
    /// The function's name.
    pub function: &'static str,
}

inventory::collect!(SourceMember);

/// What `kye::source!` defines under the source's name, so that `source = cats` in a
/// fetcher's attribute names a declared source (rustc reports an undeclared one at the
/// attribute).
#[derive(Debug, Clone, Copy)]
pub struct SourceId {
    name: &'static str,
}

impl SourceId {
    /// The id of the source called `name` (generated code).
    pub const fn new(name: &'static str) -> Self {
        SourceId { name }
    }

    /// The source's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// A problem with the declared sources, found when the registry is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Two declarations share a name.
    #[error("source `{name}` is declared twice: at {first} and at {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// The first declaration.
        first: String,
        /// The second.
        second: String,
    },
    /// A function names a source no linked crate declares.
    #[error("`{function}` belongs to source `{source_name}`, which no linked crate declares")]
    Undeclared {
        /// The function.
        function: String,
        /// The source it names.
        source_name: String,
    },
    /// Two functions of one name (in different modules) belong to different sources: a
    /// context is scoped by the name, so neither could tell whose values it may read.
    #[error(
        "two functions named `{function}` belong to different sources (`{first}` and `{second}`); \
         rename one (listers and transformers are told apart by their function's name)"
    )]
    Ambiguous {
        /// The function name.
        function: String,
        /// One source.
        first: String,
        /// The other.
        second: String,
    },
}

/// The sources of a registry: declarations by name and which functions belong to each.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    by_name: BTreeMap<&'static str, &'static SourceRegistration>,
    /// The fetcher's identifier text (`Pokemon.id`), the lister's or transformer's function →
    /// its source. The same names [`crate::Context::for_fetcher`] scopes a context by.
    members: BTreeMap<String, (&'static str, MemberKind)>,
    /// Per source, the models its functions fetch, list or produce.
    models: BTreeMap<&'static str, BTreeSet<&'static str>>,
}

impl Sources {
    /// Every declaration and membership `inventory` collected.
    pub fn from_inventory() -> Result<Sources, SourceError> {
        Sources::from_parts(
            inventory::iter::<SourceRegistration>,
            inventory::iter::<SourceMember>,
        )
    }

    /// Sources from explicit declarations and memberships (tests, or a binary without
    /// `inventory`). Every member must name a declared source.
    pub fn from_parts(
        sources: impl IntoIterator<Item = &'static SourceRegistration>,
        members: impl IntoIterator<Item = &'static SourceMember>,
    ) -> Result<Sources, SourceError> {
        let mut out = Sources::default();
        for s in sources {
            if let Some(first) = out.by_name.insert(s.name, s) {
                if !std::ptr::eq(first, s) {
                    return Err(SourceError::Duplicate {
                        name: s.name.to_string(),
                        first: first.location(),
                        second: s.location(),
                    });
                }
            }
        }
        for m in members {
            let scope = member_scope(m);
            if !out.by_name.contains_key(m.source) {
                return Err(SourceError::Undeclared {
                    function: m.function.to_string(),
                    source_name: m.source.to_string(),
                });
            }
            out.models.entry(m.source).or_default().insert(m.model);
            if let Some((other, _)) = out.members.insert(scope, (m.source, m.kind)) {
                if other != m.source {
                    return Err(SourceError::Ambiguous {
                        function: m.function.to_string(),
                        first: other.to_string(),
                        second: m.source.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Whether no source is declared.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every declared source, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &'static SourceRegistration> + '_ {
        self.by_name.values().copied()
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&'static SourceRegistration> {
        self.by_name.get(name).copied()
    }

    /// The source a context scope belongs to: a fetcher's identifier text (`Pokemon.id`), or
    /// a list function's or transformer's function name.
    pub fn source_of(&self, scope: &str) -> Option<&'static SourceRegistration> {
        self.members.get(scope).and_then(|(name, _)| self.get(name))
    }

    /// The functions of `source`: (kind, scope name), sorted.
    pub fn members_of(&self, source: &str) -> Vec<(MemberKind, &str)> {
        let mut out: Vec<(MemberKind, &str)> = self
            .members
            .iter()
            .filter(|(_, (s, _))| *s == source)
            .map(|(scope, (_, kind))| (*kind, scope.as_str()))
            .collect();
        out.sort();
        out
    }

    /// The models the functions of `source` fetch, list or produce, sorted.
    pub fn models_of(&self, source: &str) -> impl Iterator<Item = &'static str> + '_ {
        self.models.get(source).into_iter().flatten().copied()
    }

    /// Whether any source declares the secret `name`.
    pub fn declares_secret(&self, name: &str) -> bool {
        self.iter().any(|s| s.secret(name).is_some())
    }
}

/// The sources a fetch of `model` uses: those of its fetchers and lister, and with `follow`
/// every declared source (references may lead anywhere).
#[cfg(feature = "cli")]
pub(crate) fn sources_for(
    registry: &crate::Registry,
    model: &str,
    follow: bool,
) -> Vec<&'static SourceRegistration> {
    let sources = registry.sources();
    if follow {
        return sources.iter().collect();
    }
    let mut out: Vec<&'static SourceRegistration> = Vec::new();
    let scopes = registry
        .fetchers_for(model)
        .map(|f| f.identifier_text())
        .chain(registry.lister(model).map(|l| l.function.to_string()));
    for scope in scopes {
        if let Some(s) = sources.source_of(&scope) {
            if !out.iter().any(|o| std::ptr::eq(*o, s)) {
                out.push(s);
            }
        }
    }
    out
}

/// `name@version` of the declared source a scope (a fetcher's identifier text, a lister's or
/// transformer's function) belongs to in this binary's registry: what provenance stores.
pub(crate) fn source_version_of(scope: &str) -> Option<String> {
    crate::registry::registry()
        .ok()?
        .sources()
        .source_of(scope)
        .map(SourceRegistration::name_version)
}

/// The scope name a member's context carries: a fetcher's or lister's... see [`Sources::source_of`].
fn member_scope(m: &SourceMember) -> String {
    match m.kind {
        MemberKind::Fetcher => crate::registry::identifier_text(m.model, m.identifier),
        MemberKind::Lister | MemberKind::Transformer => m.function.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
