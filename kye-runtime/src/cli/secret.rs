//! `kye secret set NAME` (the value from stdin), `secret list` (names only), `secret rotate`
//! (re-seal every secret under a new master key): the sources' credentials, sealed in the
//! store with XChaCha20-Poly1305 under the master key (`KYE_MASTER_KEY` or
//! `--master-key-file`). `kye serve` opens them at start and hands them to fetchers as
//! configured secrets.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::common::{fail, fail_msg, print_json, Table};
use super::token::open;
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::server::seal::MasterKey;

/// The environment variable holding the new master key of `secret rotate`.
pub const NEW_MASTER_KEY_ENV: &str = "KYE_NEW_MASTER_KEY";

/// Arguments of `kye secret`.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// The master key's file (else `KYE_MASTER_KEY`): 32 bytes in base64 or hex.
    #[arg(long, global = true, value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// What to do with secrets.
    #[command(subcommand)]
    pub command: SecretCommand,
}

/// The `secret` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SecretCommand {
    /// Seal a secret: its value is read from stdin (one trailing newline is dropped).
    Set {
        /// The name fetchers ask for: a secret a source declares (`kye sources` lists them),
        /// or one kye.toml's authentication names (`secret = "NAME"`).
        name: String,
        /// Seal it even though no source declares it and kye.toml names it nowhere.
        #[arg(long)]
        force: bool,
    },
    /// List the sealed secrets: names, the master key that sealed them, when (never values).
    List,
    /// Re-seal every secret under a new master key (`KYE_NEW_MASTER_KEY` or
    /// `--new-master-key-file`), all or none.
    Rotate {
        /// The new master key's file.
        #[arg(long, value_name = "FILE")]
        new_master_key_file: Option<PathBuf>,
    },
}

/// Whether some source declares the secret `name`, or kye.toml's authentication names it
/// (`secret` or `username_secret` under `[hosts."..".auth]` or `[fetchers."..".auth]`); else
/// why it is refused (a typo would be sealed and never used).
fn known_secret(g: &Global, name: &str) -> Result<(), String> {
    let registry = crate::registry::registry().map_err(|e| e.to_string())?;
    if registry.sources().declares_secret(name) {
        return Ok(());
    }
    let config = super::common::load_config(g).map_err(|e| e.to_string())?;
    for section in ["hosts", "fetchers"] {
        for entry in config.table(section).into_iter().flat_map(|t| t.values()) {
            let auth = entry.get("auth").and_then(|a| a.as_table());
            let names = auth
                .into_iter()
                .flat_map(|a| ["secret", "username_secret"].map(|k| a.get(k)))
                .flatten()
                .filter_map(|v| v.as_str());
            if names.into_iter().any(|n| n == name) {
                return Ok(());
            }
        }
    }
    let declared: Vec<String> = registry
        .sources()
        .iter()
        .flat_map(|s| {
            s.secrets
                .iter()
                .map(move |k| format!("{} ({})", k.name, s.name))
        })
        .collect();
    Err(format!(
        "no source declares a secret {name}, and kye.toml names it nowhere (declared: {}); check the name, or pass --force to seal it anyway",
        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
    ))
}

/// A secret name: letters, digits and `_`, not starting with a digit (as environment
/// variables are named, so the same name works in both places).
fn check_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Run for SecretArgs {
    fn run(self, g: &Global) -> ExitCode {
        let mut store = match open(g) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let key = || MasterKey::load(self.master_key_file.as_deref(), std::env::vars());
        match self.command {
            SecretCommand::Set { name, force } => {
                if !check_name(&name) {
                    return fail_msg(
                        g,
                        &format!("secret name {name:?}: use letters, digits and `_`, not starting with a digit"),
                        EXIT_USAGE,
                    );
                }
                if !force {
                    if let Err(why) = known_secret(g, &name) {
                        return fail_msg(g, &why, EXIT_USAGE);
                    }
                }
                let key = match key() {
                    Ok(k) => k,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                let mut value = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut value) {
                    return fail_msg(
                        g,
                        &format!("cannot read the value from stdin: {e}"),
                        EXIT_USAGE,
                    );
                }
                let value = value
                    .strip_suffix('\n')
                    .map(|v| v.strip_suffix('\r').unwrap_or(v))
                    .unwrap_or(&value);
                if value.is_empty() {
                    return fail_msg(g, &format!("secret {name}: stdin was empty; pipe the value in (`printf %s \"$VALUE\" | ... secret set {name}`)"), EXIT_USAGE);
                }
                // Sealing under another key than the others' would leave a store no one key
                // opens: refused.
                match store.secrets() {
                    Ok(all) => {
                        if let Some(other) =
                            all.iter().find(|s| s.key_id != key.id() && s.name != name)
                        {
                            return fail_msg(
                                g,
                                &format!(
                                    "the master key given is {}, but secret {} is sealed under {}: give that key (or rotate every secret to the new one with `secret rotate`)",
                                    key.id(), other.name, other.key_id
                                ),
                                EXIT_USAGE,
                            );
                        }
                    }
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                }
                let sealed = match key.seal(&name, value.as_bytes()) {
                    Ok(s) => s,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                if let Err(e) = store.put_secret(&sealed) {
                    return fail(g, &e, EXIT_USAGE);
                }
                if !g.quiet {
                    eprintln!("secret {name} is sealed under master key {}", key.id());
                }
                ExitCode::from(EXIT_OK)
            }
            SecretCommand::List => {
                let all = match store.secrets() {
                    Ok(a) => a,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                if g.format == Format::Json {
                    let rows: Vec<_> = all
                        .iter()
                        .map(|s| json!({"name": s.name, "key_id": s.key_id, "updated": s.updated}))
                        .collect();
                    print_json(&rows);
                } else {
                    let mut t = Table::new(["name", "master key", "updated"]);
                    for s in &all {
                        t.row(vec![
                            s.name.clone(),
                            s.key_id.clone(),
                            s.updated.to_string(),
                        ]);
                    }
                    out_raw!("{}", t.render(g.format));
                }
                ExitCode::from(EXIT_OK)
            }
            SecretCommand::Rotate {
                new_master_key_file,
            } => {
                let old = match key() {
                    Ok(k) => k,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                let new = match new_master_key_file {
                    Some(f) => MasterKey::load(Some(&f), Vec::new()),
                    None => match std::env::var(NEW_MASTER_KEY_ENV) {
                        Ok(v) => MasterKey::parse(&v, &format!("in {NEW_MASTER_KEY_ENV}")),
                        Err(_) => {
                            return fail_msg(
                                g,
                                &format!("no new master key: set {NEW_MASTER_KEY_ENV} or pass --new-master-key-file FILE"),
                                EXIT_USAGE,
                            )
                        }
                    },
                };
                let new = match new {
                    Ok(k) => k,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                let all = match store.secrets() {
                    Ok(a) => a,
                    Err(e) => return fail(g, &e, EXIT_USAGE),
                };
                let mut resealed = Vec::with_capacity(all.len());
                for s in &all {
                    let value = match old.open(s) {
                        Ok(v) => v,
                        Err(e) => return fail(g, &e, EXIT_USAGE),
                    };
                    match new.seal(&s.name, value.as_bytes()) {
                        Ok(r) => resealed.push(r),
                        Err(e) => return fail(g, &e, EXIT_USAGE),
                    }
                }
                if let Err(e) = store.replace_secrets(&all, &resealed) {
                    return fail(g, &e, EXIT_USAGE);
                }
                if !g.quiet {
                    eprintln!(
                        "{} secret(s) re-sealed from master key {} to {}: start servers with the new key",
                        resealed.len(),
                        old.id(),
                        new.id()
                    );
                }
                ExitCode::from(EXIT_OK)
            }
        }
    }
}
