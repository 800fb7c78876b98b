//! `kye sources check`: verifies an environment before anything runs, as Airbyte's `check`
//! does. For each source: every required configuration key and secret is present and of its
//! declared type, then its probe (one known key fetched by its fetcher and never stored, or a
//! `GET` of a URL) succeeds with the configured credentials. One outcome per source; the worst
//! decides the exit code (0 ok, 2 configuration or credentials, 69 unreachable).

use std::time::Duration;

use serde::Serialize;

use super::{Probe, SourceRegistration};
use crate::context::Context;
use crate::error::{Error, ErrorClass};
use crate::redact::redact_text;
use crate::registry::Registry;

/// How long one probe may take before the host counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The result of checking one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum CheckOutcome {
    /// Configuration complete and the probe (if any) answered.
    Ok {
        /// Whether a probe ran.
        probed: bool,
    },
    /// A required configuration key or secret is missing, or a value is of the wrong type.
    Misconfigured {
        /// One line per problem (`missing secret `X``), never a value.
        problems: Vec<String>,
    },
    /// The probe was answered with 401 or 403.
    Refused {
        /// The host that refused.
        host: String,
        /// The HTTP status.
        status: u16,
    },
    /// The probe could not reach the host, or the host could not serve it (timeouts, 5xx).
    Unreachable {
        /// The host.
        host: String,
        /// What happened (redacted).
        reason: String,
    },
    /// The probe reached the host but did not succeed otherwise (404, a bad probe).
    ProbeFailed {
        /// What happened (redacted).
        reason: String,
    },
}

impl CheckOutcome {
    /// The exit code this outcome asks for: 0, 2 (configuration or credentials) or 69
    /// (unreachable).
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckOutcome::Ok { .. } => 0,
            CheckOutcome::Unreachable { .. } => 69,
            _ => 2,
        }
    }

    /// One line: `ok`, `missing secret `X``, `credentials refused by HOST (HTTP 401)`,
    /// `host unreachable: HOST (...)`.
    pub fn describe(&self) -> String {
        match self {
            CheckOutcome::Ok { probed: true } => "ok (probe answered)".to_string(),
            CheckOutcome::Ok { probed: false } => "ok (no probe declared)".to_string(),
            CheckOutcome::Misconfigured { problems } => problems.join("; "),
            CheckOutcome::Refused { host, status } => {
                format!("credentials refused by {host} (HTTP {status})")
            }
            CheckOutcome::Unreachable { host, reason } => {
                format!("host unreachable: {host} ({reason})")
            }
            CheckOutcome::ProbeFailed { reason } => format!("probe failed: {reason}"),
        }
    }
}

/// The check of one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceCheck {
    /// The source.
    pub source: String,
    /// Its version.
    pub version: String,
    /// What the check found.
    #[serde(flatten)]
    pub outcome: CheckOutcome,
}

/// The check of every source asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcesReport {
    /// One entry per source, sorted by name.
    pub sources: Vec<SourceCheck>,
}

impl SourcesReport {
    /// Only the configuration (no probe): what `fetch` checks before it starts.
    pub fn configuration(ctx: &Context, sources: &[&'static SourceRegistration]) -> Self {
        SourcesReport {
            sources: sources
                .iter()
                .map(|s| SourceCheck {
                    source: s.name.to_string(),
                    version: s.version.to_string(),
                    outcome: configuration_outcome(ctx, s),
                })
                .collect(),
        }
    }

    /// The configuration, then the probe of each source whose configuration is complete.
    pub async fn check(
        ctx: &Context,
        registry: &Registry,
        sources: &[&'static SourceRegistration],
    ) -> Self {
        let mut out = Vec::new();
        for s in sources {
            let mut outcome = configuration_outcome(ctx, s);
            if matches!(outcome, CheckOutcome::Ok { .. }) {
                if let Some(probe) = s.probe {
                    outcome = run_probe(ctx, registry, s, probe).await;
                }
            }
            out.push(SourceCheck {
                source: s.name.to_string(),
                version: s.version.to_string(),
                outcome,
            });
        }
        SourcesReport { sources: out }
    }

    /// The worst exit code of the sources (69 before 2 before 0).
    pub fn exit_code(&self) -> u8 {
        let codes = self.sources.iter().map(|c| c.outcome.exit_code());
        codes.fold(0, |worst, c| match (worst, c) {
            (69, _) | (_, 69) => 69,
            (2, _) | (_, 2) => 2,
            _ => 0,
        })
    }

    /// The checks that are not ok.
    pub fn problems(&self) -> impl Iterator<Item = &SourceCheck> {
        self.sources
            .iter()
            .filter(|c| !matches!(c.outcome, CheckOutcome::Ok { .. }))
    }

    /// One line per source: `pokeapi 0.1.0: ok (probe answered)`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.sources {
            out.push_str(&format!(
                "{} {}: {}\n",
                c.source,
                c.version,
                c.outcome.describe()
            ));
        }
        if self.sources.is_empty() {
            out.push_str("no sources are declared (kye::source!)\n");
        }
        out
    }
}

fn configuration_outcome(ctx: &Context, source: &'static SourceRegistration) -> CheckOutcome {
    let problems = ctx.source_env(source).problems();
    if problems.is_empty() {
        CheckOutcome::Ok { probed: false }
    } else {
        CheckOutcome::Misconfigured { problems }
    }
}

async fn run_probe(
    ctx: &Context,
    registry: &Registry,
    source: &'static SourceRegistration,
    probe: Probe,
) -> CheckOutcome {
    let mut host = source
        .hosts
        .first()
        .copied()
        .unwrap_or("the source")
        .to_string();
    let attempt = async {
        match probe {
            Probe::Key(request) => {
                let resolved = registry.resolve_str(request).map_err(|e| {
                    Error::permanent(format!("the probe `{request}` does not resolve: {e}"))
                })?;
                let fetcher = resolved.fetcher();
                let Some(key) = resolved.keys().iter().next() else {
                    return Err(Error::permanent(format!(
                        "the probe `{request}` names no key"
                    )));
                };
                let scoped = ctx.for_fetcher(&fetcher.identifier_text());
                let scoped = match scoped.source() {
                    Some(_) => scoped,
                    None => scoped.for_source(source),
                };
                match fetcher.call(&key, scoped.with_attempt(1)).await? {
                    Some(_) => Ok(()),
                    None => Err(Error::missing(format!(
                        "the probe `{request}`: the source has no such key"
                    ))),
                }
            }
            Probe::Get(template) => {
                let url = fill(ctx, source, template)?;
                ctx.for_source(source).get_response(&url).await.map(|_| ())
            }
        }
    };
    let result = match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => {
            return CheckOutcome::Unreachable {
                host,
                reason: format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
            }
        }
    };
    let error = match result {
        Ok(()) => return CheckOutcome::Ok { probed: true },
        Err(e) => e,
    };
    if let Some(h) = error
        .url()
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
    {
        host = h;
    }
    let reason = redact_text(&error.to_string());
    match (error.status(), error.class()) {
        (Some(status @ (401 | 403)), _) => CheckOutcome::Refused { host, status },
        (_, ErrorClass::Retryable) => CheckOutcome::Unreachable { host, reason },
        _ if reason.contains("is not set") => CheckOutcome::Misconfigured {
            problems: vec![reason],
        },
        _ => CheckOutcome::ProbeFailed { reason },
    }
}

/// A probe URL with `{key}` replaced by the source's configuration values.
fn fill(
    ctx: &Context,
    source: &'static SourceRegistration,
    template: &str,
) -> crate::Result<String> {
    let env = ctx.source_env(source);
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let key = &rest[start + 1..start + len];
        let value: Option<toml::Value> = env.config(key)?;
        match value {
            Some(toml::Value::String(s)) => out.push_str(s.trim_end_matches('/')),
            Some(toml::Value::Integer(i)) => out.push_str(&i.to_string()),
            Some(toml::Value::Float(f)) => out.push_str(&f.to_string()),
            Some(toml::Value::Boolean(b)) => out.push_str(&b.to_string()),
            Some(_) => {
                return Err(Error::permanent(format!(
                    "source `{}`: the probe uses config `{key}`, which is not a single value",
                    source.name
                )))
            }
            None => {
                return Err(Error::permanent(format!(
                    "source `{}`: the probe needs config `{key}`, which is not set",
                    source.name
                )))
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
