//! What `kye sources` prints: every declared source with its version, hosts, configuration
//! keys and secrets (names and whether each is set, never a value), as text, JSON or
//! Markdown. The registry listing (`kye list`, REGISTRY.md) includes the same, without the
//! statuses (they describe one machine).
//!
//! # JSON format (stable; fields may be added)
//!
//! ```json
//! {"sources": [{"name": "cats", "description": "The cat API.", "crate": "cat-source",
//!   "version": "0.3.1", "hosts": ["api.cats.example"],
//!   "config": [{"name": "base_url", "type": "url", "default": "\"https://api.cats.example\"",
//!               "required": false, "description": "...", "status": {"state": "default"}}],
//!   "secrets": [{"name": "CATAPI_TOKEN", "sent_as": "bearer", "required": true,
//!                "description": "...", "status": "missing"}],
//!   "probe": "Cat.id = 1", "fetchers": ["Cat.id"], "listers": [], "transformers": [],
//!   "location": "src/lib.rs:12"}]}
//! ```

use std::fmt::Write as _;

use serde::Serialize;

use super::{ConfigStatus, MemberKind, SecretStatus, SourceEnv, Sources};
use crate::listing::{first_paragraph, md_escape};
use crate::output::Format;

/// Every declared source, as data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcesListing {
    /// Sorted by name.
    pub sources: Vec<SourceListing>,
}

/// One source of a [`SourcesListing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceListing {
    /// Its name.
    pub name: String,
    /// One line.
    pub description: String,
    /// The Cargo package that declares it.
    #[serde(rename = "crate")]
    pub krate: String,
    /// That package's version.
    pub version: String,
    /// The hosts its authentication goes to.
    pub hosts: Vec<String>,
    /// Its configuration keys.
    pub config: Vec<ConfigListing>,
    /// Its secrets.
    pub secrets: Vec<SecretListing>,
    /// Its probe, if it declares one.
    pub probe: Option<String>,
    /// The identifiers of its fetchers (`Cat.id`).
    pub fetchers: Vec<String>,
    /// The functions of its list functions.
    pub listers: Vec<String>,
    /// The functions of its transformers.
    pub transformers: Vec<String>,
    /// `file:line` of the declaration.
    pub location: String,
}

/// One configuration key of a [`SourceListing`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigListing {
    /// Its name in the source's table.
    pub name: String,
    /// `string`, `url`, `integer`, `number` or `boolean`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The default as a TOML literal.
    pub default: Option<String>,
    /// Whether a value must be configured.
    pub required: bool,
    /// What it is for.
    pub description: String,
    /// Whether it is set here (left out of the registry listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ConfigStatus>,
}

/// One secret of a [`SourceListing`]: its name and whether it is set, never its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretListing {
    /// Its name.
    pub name: String,
    /// How kye sends it (`bearer`, `header X-Api-Key`, `query appid`, `basic (user ...)`,
    /// `read by the fetchers`).
    pub sent_as: String,
    /// Whether the source needs it.
    pub required: bool,
    /// What it is for.
    pub description: String,
    /// Whether it is set here (left out of the registry listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<SecretStatus>,
}

impl SourcesListing {
    /// The declared sources; with `env` (a context's configuration and secrets), whether each
    /// key and secret is set.
    pub fn new(sources: &Sources, env: Option<&crate::Context>) -> SourcesListing {
        let sources = sources
            .iter()
            .map(|s| {
                let here: Option<SourceEnv<'_>> = env.map(|ctx| ctx.source_env(s));
                let members = sources.members_of(s.name);
                let of = |kind: MemberKind| -> Vec<String> {
                    members
                        .iter()
                        .filter(|(k, _)| *k == kind)
                        .map(|(_, name)| name.to_string())
                        .collect()
                };
                SourceListing {
                    name: s.name.to_string(),
                    description: first_paragraph(s.description),
                    krate: s.crate_name.to_string(),
                    version: s.version.to_string(),
                    hosts: s.hosts.iter().map(|h| h.to_string()).collect(),
                    config: s
                        .config
                        .iter()
                        .map(|k| ConfigListing {
                            name: k.name.to_string(),
                            ty: k.kind.as_str().to_string(),
                            default: k.default.map(str::to_string),
                            required: k.required(),
                            description: first_paragraph(k.description),
                            status: here.as_ref().map(|e| e.config_status(k)),
                        })
                        .collect(),
                    secrets: s
                        .secrets
                        .iter()
                        .map(|k| SecretListing {
                            name: k.name.to_string(),
                            sent_as: k.send.to_string(),
                            required: !k.optional,
                            description: first_paragraph(k.description),
                            status: here.as_ref().map(|e| e.secret_status(k.name)),
                        })
                        .collect(),
                    probe: s.probe.map(|p| p.to_string()),
                    fetchers: of(MemberKind::Fetcher),
                    listers: of(MemberKind::Lister),
                    transformers: of(MemberKind::Transformer),
                    location: s.location(),
                }
            })
            .collect();
        SourcesListing { sources }
    }

    /// Renders in the given format.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.to_text(),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
                s.push('\n');
                s
            }
            Format::Markdown => {
                let mut out = String::from(
                    "# Sources\n\n<!-- Generated by `kye sources --format markdown`. -->\n",
                );
                self.markdown_section(&mut out);
                out
            }
        }
    }

    /// One block per source, for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if self.sources.is_empty() {
            out.push_str("no sources are declared (kye::source!)\n");
        }
        for (i, s) in self.sources.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{} {} ({}): {}",
                s.name, s.version, s.krate, s.description
            );
            let _ = writeln!(out, "  hosts:        {}", list_or_none(&s.hosts));
            if s.config.is_empty() {
                out.push_str("  config:       none\n");
            }
            for (j, k) in s.config.iter().enumerate() {
                let label = if j == 0 { "config:" } else { "" };
                let _ = writeln!(
                    out,
                    "  {label:<13} {}.{} ({}{}){}: {}",
                    s.name,
                    k.name,
                    k.ty,
                    match (&k.default, k.required) {
                        (Some(d), _) => format!(", default {d}"),
                        (None, true) => ", required".to_string(),
                        (None, false) => ", optional".to_string(),
                    },
                    k.status
                        .as_ref()
                        .map(config_status_text)
                        .unwrap_or_default(),
                    k.description
                );
            }
            if s.secrets.is_empty() {
                out.push_str("  secrets:      none\n");
            }
            for (j, k) in s.secrets.iter().enumerate() {
                let label = if j == 0 { "secrets:" } else { "" };
                let _ = writeln!(
                    out,
                    "  {label:<13} {} ({}{}){}: {}",
                    k.name,
                    k.sent_as,
                    if k.required { "" } else { ", optional" },
                    k.status.map(secret_status_text).unwrap_or_default(),
                    k.description
                );
            }
            let _ = writeln!(
                out,
                "  probe:        {}",
                s.probe.as_deref().unwrap_or("none")
            );
            let _ = writeln!(out, "  fetchers:     {}", list_or_none(&s.fetchers));
            if !s.listers.is_empty() {
                let _ = writeln!(out, "  listers:      {}", s.listers.join(", "));
            }
            if !s.transformers.is_empty() {
                let _ = writeln!(out, "  transformers: {}", s.transformers.join(", "));
            }
            let _ = writeln!(out, "  declared at:  {}", s.location);
        }
        out
    }

    /// The `## Sources` section of REGISTRY.md (and of `kye sources --format markdown`).
    pub fn markdown_section(&self, out: &mut String) {
        out.push_str("\n## Sources\n\n| Source | Version | Crate | Hosts | Config | Secrets | Probe | Functions | Description |\n|---|---|---|---|---|---|---|---|---|\n");
        for s in &self.sources {
            let config: Vec<String> = s
                .config
                .iter()
                .map(|k| {
                    let mut t = format!("`{}` ({}", k.name, k.ty);
                    match (&k.default, k.required) {
                        (Some(d), _) => t.push_str(&format!(", default `{d}`")),
                        (None, true) => t.push_str(", required"),
                        (None, false) => t.push_str(", optional"),
                    }
                    t.push(')');
                    if let Some(st) = &k.status {
                        t.push_str(&config_status_text(st));
                    }
                    t
                })
                .collect();
            let secrets: Vec<String> = s
                .secrets
                .iter()
                .map(|k| {
                    format!(
                        "`{}` ({}{}){}",
                        k.name,
                        k.sent_as,
                        if k.required { "" } else { ", optional" },
                        k.status.map(secret_status_text).unwrap_or_default()
                    )
                })
                .collect();
            let functions: Vec<String> = s
                .fetchers
                .iter()
                .chain(&s.listers)
                .chain(&s.transformers)
                .map(|f| format!("`{f}`"))
                .collect();
            let _ = writeln!(
                out,
                "| `{}` | {} | `{}` | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.version,
                s.krate,
                md_escape(
                    &s.hosts
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                md_escape(&none_if_empty(config.join(", "))),
                md_escape(&none_if_empty(secrets.join(", "))),
                s.probe
                    .as_deref()
                    .map(|p| format!("`{}`", md_escape(p)))
                    .unwrap_or_else(|| "none".into()),
                md_escape(&functions.join(", ")),
                md_escape(&s.description)
            );
        }
    }
}

fn config_status_text(status: &ConfigStatus) -> String {
    match status {
        ConfigStatus::Set => " [set]".to_string(),
        ConfigStatus::Default => " [default]".to_string(),
        ConfigStatus::Unset => " [unset]".to_string(),
        ConfigStatus::Missing => " [MISSING]".to_string(),
        ConfigStatus::Invalid(why) => format!(" [INVALID: {why}]"),
    }
}

fn secret_status_text(status: SecretStatus) -> String {
    match status {
        SecretStatus::Set => " [set]",
        SecretStatus::Unset => " [unset]",
        SecretStatus::Missing => " [MISSING]",
    }
    .to_string()
}

fn list_or_none(items: &[String]) -> String {
    none_if_empty(items.join(", "))
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "none".to_string()
    } else {
        s
    }
}
