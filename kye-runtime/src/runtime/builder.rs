//! Building a [`Runtime`]: the registry, configuration and secrets, the fetchers' context, the
//! executor's settings, and the store, opened and prepared for every model.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::summary::Progress;
use super::{Inner, ProgressFn, Reg, Runtime};
use crate::config::Config;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::exec::{ExecSettings, Shutdown};
use crate::registry::Registry;
use crate::secrets::Secrets;
use crate::store::{open_store, StoreSpec, StoreWrite};

/// Default store when neither the builder nor `store` in `kye.toml` names one.
pub const DEFAULT_STORE: &str = "sqlite:kye.db";

/// Builds a [`Runtime`]: registry, configuration, secrets, store, execution settings.
pub struct RuntimeBuilder {
    registry: Option<Registry>,
    config_file: Option<PathBuf>,
    config: Option<Config>,
    env: Option<Vec<(String, String)>>,
    secrets: Option<Secrets>,
    store_spec: Option<String>,
    parsed_spec: Option<StoreSpec>,
    store: Option<Box<dyn StoreWrite>>,
    concurrency: Option<usize>,
    handle_ctrl_c: bool,
    progress: Option<ProgressFn>,
    shutdown: Option<Shutdown>,
}

impl fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The store as its spec shows it: a PostgreSQL URL without its password, never the
        // text as given (which may carry one).
        let store = self
            .parsed_spec
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| {
                self.store_spec.as_deref().map(|text| {
                    text.parse::<StoreSpec>()
                        .map(|spec| spec.to_string())
                        .unwrap_or_else(|_| "(a store that does not parse)".to_string())
                })
            });
        f.debug_struct("RuntimeBuilder")
            .field("config_file", &self.config_file)
            .field("store", &store)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            registry: None,
            config_file: None,
            config: None,
            env: None,
            secrets: None,
            store_spec: None,
            parsed_spec: None,
            store: None,
            concurrency: None,
            handle_ctrl_c: true,
            progress: None,
            shutdown: None,
        }
    }
}

impl RuntimeBuilder {
    /// Uses this registry instead of the binary's (`kye_runtime::registry()`).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Reads configuration from this file (it must exist) instead of `KYE_CONFIG` / `./kye.toml`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Uses this configuration as is (no file lookup, no environment overrides).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Reads `KYE_*` overrides and secrets from these variables instead of the process
    /// environment (tests, embedding).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = Some(vars.into_iter().collect());
        self
    }

    /// Uses these secrets instead of the environment and the secrets file.
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The store: `sqlite:PATH`, `PATH.db` or `dir:PATH` (default: `store` in `kye.toml`, else
    /// `sqlite:kye.db`).
    pub fn store(mut self, spec: impl Into<String>) -> Self {
        self.store_spec = Some(spec.into());
        self
    }

    /// The store, already parsed (keeps a password given in a `postgres://` URL, which the
    /// spec's text never shows).
    pub fn store_spec(mut self, spec: StoreSpec) -> Self {
        self.parsed_spec = Some(spec);
        self
    }

    /// Uses an already opened store.
    pub fn store_instance(mut self, store: Box<dyn StoreWrite>) -> Self {
        self.store = Some(store);
        self
    }

    /// Overrides `run.concurrency`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// Whether `fetch` stops gracefully on Ctrl-C and SIGTERM (default: yes). Note that once
    /// tokio listens for them, these signals no longer end the process by themselves.
    pub fn handle_ctrl_c(mut self, yes: bool) -> Self {
        self.handle_ctrl_c = yes;
        self
    }

    /// Calls `f` with the counts after each write (for progress bars).
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Uses this stop switch (trigger it to stop runs as Ctrl-C would).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Loads configuration and secrets, resolves authentication, opens and prepares the store.
    pub fn build(self) -> Result<Runtime> {
        let env: Vec<(String, String)> = match self.env {
            Some(e) => e,
            None => std::env::vars().collect(),
        };
        let config = match self.config {
            Some(c) => c,
            None => Config::discover(self.config_file.as_deref(), env.iter().cloned())?,
        };
        let secrets = match self.secrets {
            Some(s) => s,
            None => load_secrets(&env, &config)?,
        };
        let registry = match self.registry {
            Some(r) => Reg::Owned(Box::new(r)),
            None => Reg::Static(
                crate::registry::registry().map_err(|e| Error::permanent(e.to_string()))?,
            ),
        };
        let ctx = Context::builder()
            .config(config.clone())
            .secrets(secrets.clone())
            .sources(registry.get().sources().clone())
            .build()?;
        let mut exec = ExecSettings::from_config(&config)?;
        if let Some(n) = self.concurrency {
            exec.concurrency = n;
        }
        // Calls through `Runtime::context()`, outside any fetcher, are retried as a call would be.
        let ctx = ctx.with_retries(exec.default_policy.clone());
        let mut store = match self.store {
            Some(s) => s,
            None => {
                let mut spec: StoreSpec =
                    match (self.parsed_spec, self.store_spec, config.store_spec()) {
                        (Some(spec), _, _) => spec,
                        (None, Some(spec), _) => spec.parse().map_err(Error::other)?,
                        (None, None, Some(configured)) => configured.map_err(Error::permanent)?,
                        (None, None, None) => DEFAULT_STORE.parse().map_err(Error::other)?,
                    };
                // A password named as a kye secret comes from this runtime's secrets.
                spec.resolve_secrets(&secrets).map_err(Error::other)?;
                open_store(&spec).map_err(Error::other)?
            }
        };
        // Each schema once, however many of its models are registered.
        let mut prepared: Vec<*const kye_lang::Schema> = Vec::new();
        for m in registry.get().models() {
            let schema = m.schema();
            if !prepared.contains(&(schema as *const _)) {
                store.prepare(schema).map_err(Error::other)?;
                prepared.push(schema as *const _);
            }
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                registry,
                ctx,
                exec,
                store: Arc::new(Mutex::new(store)),
                handle_ctrl_c: self.handle_ctrl_c,
                progress: self.progress,
                shutdown: self.shutdown.unwrap_or_default(),
            }),
        })
    }
}

/// The secrets of `env` (its variables, then the secrets file it or `config` names: `KYE_SECRETS_FILE`, else `secrets.file`).
pub(crate) fn load_secrets(env: &[(String, String)], config: &Config) -> Result<Secrets> {
    let file = env
        .iter()
        .find(|(k, _)| k == "KYE_SECRETS_FILE")
        .map(|(_, v)| PathBuf::from(v))
        .or_else(|| config.get_path("secrets.file"));
    Secrets::load(env.iter().cloned(), file.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_store_password() {
        for url in [
            "postgres://kye:s3cr3t-pw@db.example:5432/warehouse",
            "postgres://kye:s3cr3t/pw@db.example/warehouse",
        ] {
            let shown = format!("{:?}", Runtime::builder().store(url));
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("RuntimeBuilder"), "{shown}");
        }
    }
}
