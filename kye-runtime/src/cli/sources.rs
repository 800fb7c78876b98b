//! `kye sources`: every declared source (`kye::source!`) with its version, hosts,
//! configuration keys and secrets (names and whether each is set, never a value) as text,
//! JSON (`--format json`, fields in [`crate::SourcesListing`]) or Markdown; and
//! `kye sources check [NAME]`, which verifies the environment before anything runs: the
//! configuration of each source, then its probe with the configured credentials. One line per
//! source; exit 0 all ok, 2 configuration or credentials, 69 a host unreachable.
//!
//! Needs no store: it reads kye.toml, the `KYE_*` environment and the secrets (environment,
//! then the secrets file).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::common::{fail, fail_msg, load_config, print_json, tokio_runtime};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::context::Context;
use crate::registry::Registry;
use crate::source::{SourceRegistration, SourcesListing, SourcesReport};

/// Arguments of `kye sources`.
#[derive(Debug, Args)]
pub struct SourcesArgs {
    /// `check [NAME]`; without it, the listing.
    #[command(subcommand)]
    pub command: Option<SourcesCommand>,
}

/// What `kye sources` does besides listing.
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Verify the environment: required configuration and secrets present and well-formed,
    /// then each source's probe with the configured credentials. Exit 0 ok, 2 configuration
    /// or credentials, 69 a host unreachable.
    Check {
        /// Only this source (default: every declared source).
        name: Option<String>,
    },
}

impl Run for SourcesArgs {
    fn run(self, g: &Global) -> ExitCode {
        let registry = match crate::registry::registry() {
            Ok(r) => r,
            Err(e) => return fail(g, e, EXIT_USAGE),
        };
        let ctx = match context(g, registry) {
            Ok(c) => c,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        match self.command {
            None => {
                let listing = SourcesListing::new(registry.sources(), Some(&ctx));
                print!("{}", listing.render(g.format));
                ExitCode::from(EXIT_OK)
            }
            Some(SourcesCommand::Check { name }) => {
                let chosen: Vec<&'static SourceRegistration> = match &name {
                    Some(n) => match registry.sources().get(n) {
                        Some(s) => vec![s],
                        None => {
                            let known: Vec<&str> =
                                registry.sources().iter().map(|s| s.name).collect();
                            return fail_msg(
                                g,
                                &format!(
                                    "no source is called `{n}` (declared: {})",
                                    if known.is_empty() {
                                        "none".to_string()
                                    } else {
                                        known.join(", ")
                                    }
                                ),
                                EXIT_USAGE,
                            );
                        }
                    },
                    None => registry.sources().iter().collect(),
                };
                let tokio = match tokio_runtime() {
                    Ok(t) => t,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                let report = tokio.block_on(SourcesReport::check(&ctx, registry, &chosen));
                match g.format {
                    Format::Json => print_json(&report),
                    _ => {
                        if !(g.quiet && report.exit_code() == 0) {
                            print!("{}", report.to_text());
                        }
                    }
                }
                ExitCode::from(report.exit_code())
            }
        }
    }
}

/// A context with the configuration and secrets of the global flags and the registry's
/// sources (no store).
fn context(g: &Global, registry: &Registry) -> crate::Result<Context> {
    let config = load_config(g)?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    // The master keys are the server's, never a source's secret (as for `kye serve`).
    for (k, v) in &env {
        if k == "KYE_MASTER_KEY" || k == "KYE_NEW_MASTER_KEY" {
            crate::redact::register_sensitive_value(v);
        }
    }
    let fetcher_env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "KYE_MASTER_KEY" && k != "KYE_NEW_MASTER_KEY")
        .cloned()
        .collect();
    #[allow(unused_mut)]
    let mut secrets = crate::runtime::load_secrets(&fetcher_env, &config)?;
    // With a master key, the store's sealed secrets count too: the check sees what `kye
    // serve` on the same store would hand its sources.
    #[cfg(feature = "server")]
    sealed_secrets(g, &env, &mut secrets)?;
    Context::builder()
        .config(config)
        .secrets(secrets)
        .sources(registry.sources().clone())
        .build()
}

/// Adds the sealed secrets of the store the global flags name, when a master key is given
/// (`KYE_MASTER_KEY`); nothing without one.
#[cfg(feature = "server")]
fn sealed_secrets(
    g: &Global,
    env: &[(String, String)],
    secrets: &mut crate::Secrets,
) -> crate::Result<()> {
    use crate::server::seal::{MasterKey, SealError};
    let key = match MasterKey::load(None, env.iter().cloned()) {
        Ok(k) => k,
        Err(SealError::NoKey) => return Ok(()),
        Err(e) => return Err(crate::Error::other(e)),
    };
    let spec = super::common::store_spec(g)?;
    if matches!(spec, crate::store::StoreSpec::Dir(_)) {
        return Ok(());
    }
    let mut store = crate::store::open_server_store(&spec).map_err(crate::Error::other)?;
    crate::Server::open_sealed_secrets(store.as_mut(), Some(&key), secrets)?;
    Ok(())
}
