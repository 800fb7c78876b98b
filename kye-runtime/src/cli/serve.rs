//! `kye serve --listen 127.0.0.1:8080`: the HTTP API over the store (see `docs/serving.md`).
//! Opens the sealed secrets with the master key (`KYE_MASTER_KEY` or `--master-key-file`;
//! needed only when secrets are sealed), hands them to fetchers with the secrets of the
//! environment and the secrets file (those win), and serves until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::common::{
    fail, fail_msg, load_config, runtime_builder, setup_failed, store_spec, tokio_runtime,
};
use super::{Global, Run, EXIT_OK, EXIT_USAGE};
use crate::secrets::Secrets;
use crate::server::seal::{MasterKey, SealError};
use crate::server::{ServeOptions, Server};
use crate::store::open_server_store;

/// Arguments of `kye serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Serve on loopback and put a TLS reverse proxy in front for
    /// anything else (docs/serving.md).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The master key's file (else `KYE_MASTER_KEY`), to open the sealed secrets.
    #[arg(long, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
}

impl Run for ServeArgs {
    fn run(self, g: &Global) -> ExitCode {
        let config = match load_config(g) {
            Ok(c) => c,
            Err(e) => return setup_failed(g, &e),
        };
        let spec = match store_spec(g) {
            Ok(s) => s,
            Err(e) => return setup_failed(g, &e),
        };
        let mut store = match open_server_store(&spec) {
            Ok(s) => s,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        // The secrets fetchers see: the environment and the secrets file, then the sealed ones.
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = env
            .iter()
            .find(|(k, _)| k == "KYE_SECRETS_FILE")
            .map(|(_, v)| PathBuf::from(v))
            .or_else(|| config.get_path("secrets.file"));
        // The master keys are the server's, never a fetcher's secret; their text is redacted
        // wherever kye writes.
        for (k, v) in &env {
            if k == "KYE_MASTER_KEY" || k == "KYE_NEW_MASTER_KEY" {
                crate::redact::register_sensitive_value(v);
            }
        }
        let fetcher_env = env
            .iter()
            .filter(|(k, _)| k != "KYE_MASTER_KEY" && k != "KYE_NEW_MASTER_KEY")
            .cloned();
        let mut secrets = match Secrets::load(fetcher_env, file.as_deref()) {
            Ok(s) => s,
            Err(e) => return setup_failed(g, &e),
        };
        let key = match MasterKey::load(self.master_key_file.as_deref(), env.iter().cloned()) {
            Ok(k) => Some(k),
            Err(SealError::NoKey) => None,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        let opened = match Server::open_sealed_secrets(store.as_mut(), key.as_ref(), &mut secrets) {
            Ok(n) => n,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        let options = match ServeOptions::new(self.listen).with_config(&config) {
            Ok(o) => o,
            Err(e) => return setup_failed(g, &e),
        };
        let rt = match tokio_runtime() {
            Ok(rt) => rt,
            Err(e) => {
                return fail_msg(
                    g,
                    &format!("cannot start the async runtime: {e}"),
                    EXIT_USAGE,
                )
            }
        };
        rt.block_on(async move {
            let runtime = match runtime_builder(g).map(|b| b.secrets(secrets).handle_ctrl_c(false).build()) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) | Err(e) => return setup_failed(g, &e),
            };
            let server = match Server::bind(runtime, store, options).await {
                Ok(s) => s,
                Err(e) => return setup_failed(g, &e),
            };
            // On PostgreSQL the runs page and `GET /v1/runs/{id}` show queued runs' workers.
            #[cfg(feature = "postgres")]
            if let crate::store::StoreSpec::Postgres(pg) = &spec {
                match crate::Queue::open(pg) {
                    Ok(q) => server.watch_queue(q),
                    Err(e) => tracing::warn!(error = %e, "queued runs will show without their workers"),
                }
            }
            if let (Ok(addr), false) = (server.local_addr(), g.quiet) {
                eprintln!("kye serve: listening on http://{addr} ({opened} sealed secret(s) opened); Ctrl-C or SIGTERM stops");
            }
            match server.run_until(stop_signal()).await {
                Ok(()) => ExitCode::from(EXIT_OK),
                Err(e) => fail(g, &e, EXIT_USAGE),
            }
        })
    }
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
