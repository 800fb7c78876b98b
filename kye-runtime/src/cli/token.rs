//! `kye token create NAME --role ROLE [--expires 30d]` (prints the token once), `token list`,
//! `token revoke NAME`: the API tokens of `kye serve`, kept in the store as SHA-256 hashes.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::common::{fail, fail_msg, load_config, print_json, setup_failed, store_spec, Table};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::server::auth::Roles;
use crate::server::Server;
use crate::store::{open_server_store, ServerStore, Timestamp, TokenRecord};

/// Arguments of `kye token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// What to do with tokens.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// The `token` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a role; the token is printed once and stored only as a hash.
    Create {
        /// Who or what holds it (letters, digits, `-`, `_`, `.`, `@`).
        name: String,
        /// Its role: a `[roles.NAME]` of kye.toml.
        #[arg(long)]
        role: String,
        /// It stops working after this long (`30d`, `12h`).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List tokens: name, role, created, expires, state (never the token).
    List,
    /// Revoke a token: every server refuses it from its next request on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub(crate) fn open(g: &Global) -> Result<Box<dyn ServerStore>, ExitCode> {
    let spec = store_spec(g).map_err(|e| setup_failed(g, &e))?;
    open_server_store(&spec).map_err(|e| fail(g, &e, EXIT_USAGE))
}

impl Run for TokenArgs {
    fn run(self, g: &Global) -> ExitCode {
        match self.command {
            TokenCommand::Create {
                name,
                role,
                expires,
            } => create(g, name, role, expires),
            TokenCommand::List => list(g),
            TokenCommand::Revoke { name } => {
                let mut store = match open(g) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                match store.revoke_token(&name, Timestamp::now()) {
                    Ok(true) => {
                        if !g.quiet {
                            eprintln!("token {name} is revoked");
                        }
                        ExitCode::from(EXIT_OK)
                    }
                    Ok(false) => fail_msg(
                        g,
                        &format!("no token {name:?}; `token list` shows the tokens"),
                        EXIT_USAGE,
                    ),
                    Err(e) => fail(g, &e, EXIT_USAGE),
                }
            }
        }
    }
}

fn create(g: &Global, name: String, role: String, expires: Option<String>) -> ExitCode {
    let config = match load_config(g) {
        Ok(c) => c,
        Err(e) => return setup_failed(g, &e),
    };
    let roles = match Roles::from_config(&config) {
        Ok(r) => r,
        Err(e) => return setup_failed(g, &e),
    };
    if roles.get(&role).is_none() {
        return setup_failed(g, &roles.unknown(&role));
    }
    let now = Timestamp::now();
    let expires = match expires.as_deref().map(crate::duration::parse) {
        None => None,
        Some(Ok(d)) => Some(Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )),
        Some(Err(e)) => return fail_msg(g, &format!("--expires: {e}"), EXIT_USAGE),
    };
    let mut store = match open(g) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let token = match Server::issue_token(store.as_mut(), &name, &role, expires) {
        Ok(t) => t,
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    if g.format == Format::Json {
        print_json(&json!({"name": name, "role": role, "token": token, "expires": expires}));
    } else {
        out!("{token}");
        if !g.quiet {
            eprintln!(
                "token {name} (role {role}{}): shown once, kye keeps only its hash",
                expires
                    .map(|e| format!(", expires {e}"))
                    .unwrap_or_default()
            );
        }
    }
    ExitCode::from(EXIT_OK)
}

fn list(g: &Global) -> ExitCode {
    let mut store = match open(g) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let tokens = match store.tokens() {
        Ok(t) => t,
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    let now = Timestamp::now();
    let state = |t: &TokenRecord| {
        if t.revoked.is_some() {
            "revoked"
        } else if t.is_active(now) {
            "active"
        } else {
            "expired"
        }
    };
    if g.format == Format::Json {
        let rows: Vec<_> = tokens
            .iter()
            .map(|t| {
                json!({"name": t.name, "role": t.role, "created": t.created,
                       "expires": t.expires, "revoked": t.revoked, "state": state(t)})
            })
            .collect();
        print_json(&rows);
        return ExitCode::from(EXIT_OK);
    }
    let mut table = Table::new(["name", "role", "created", "expires", "state"]);
    for t in &tokens {
        table.row(vec![
            t.name.clone(),
            t.role.clone(),
            t.created.to_string(),
            t.expires
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into()),
            state(t).to_string(),
        ]);
    }
    out_raw!("{}", table.render(g.format));
    ExitCode::from(EXIT_OK)
}
