//! One source's view of the configuration and the secrets: what `ctx.config::<T>(name)` and
//! `ctx.secret(NAME)` read for a fetcher of the source, what `kye sources` reports as set, and
//! the authentication kye sends to the source's hosts. Values come from the table named after
//! the source in kye.toml (`[pokeapi] base_url = "..."`, or `KYE_POKEAPI__BASE_URL`); secrets
//! from the environment, the secrets file or, under `kye serve`, the sealed secrets.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{BasicUser, ConfigKey, SendAs, SourceRegistration};
use crate::auth::Auth;
use crate::config::{value_as, Config};
use crate::error::{Error, Result};
use crate::secrets::{Secret, Secrets};

/// One source with the configuration and secrets in force.
#[derive(Clone, Copy)]
pub struct SourceEnv<'a> {
    source: &'static SourceRegistration,
    config: &'a Config,
    secrets: &'a Secrets,
}

/// Whether a declared configuration key has a usable value (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "why")]
pub enum ConfigStatus {
    /// Configured, and of the declared type.
    Set,
    /// Not configured; the declared default applies.
    Default,
    /// Not configured, optional: fetchers get `None`.
    Unset,
    /// Not configured and required.
    Missing,
    /// Configured, but not of the declared type (the reason, without the value).
    Invalid(String),
}

/// Whether a declared secret is set (never its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretStatus {
    /// Set (environment, secrets file or sealed secret).
    Set,
    /// Not set, optional.
    Unset,
    /// Not set and required.
    Missing,
}

impl<'a> SourceEnv<'a> {
    /// `source` with this configuration and these secrets.
    pub fn new(
        source: &'static SourceRegistration,
        config: &'a Config,
        secrets: &'a Secrets,
    ) -> Self {
        SourceEnv {
            source,
            config,
            secrets,
        }
    }

    /// The source.
    pub fn source(&self) -> &'static SourceRegistration {
        self.source
    }

    /// The dotted kye.toml key of a configuration key (`pokeapi.base_url`).
    pub fn config_path(&self, key: &str) -> String {
        format!("{}.{key}", self.source.name)
    }

    fn declared(&self, name: &str) -> Result<&'static ConfigKey> {
        self.source.config_key(name).ok_or_else(|| {
            let declared: Vec<&str> = self.source.config.iter().map(|k| k.name).collect();
            Error::permanent(format!(
                "source `{}` declares no configuration key `{name}` (it declares: {}); declare it in its `kye::source!`",
                self.source.name,
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            ))
        })
    }

    /// The value of the declared key `name` as `T`: the configured one, else the declared
    /// default; an optional key with neither is `None` (ask for an `Option<T>`). Errors name
    /// the source and the key: undeclared, required but unset, of the wrong type.
    pub fn config<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let key = self.declared(name)?;
        let path = self.config_path(name);
        let wrong = |why: String| {
            Error::permanent(format!(
                "source `{}`: configuration key `{name}` ({path} in kye.toml or KYE_{} in the environment): {why}",
                self.source.name,
                path.to_ascii_uppercase().replace('.', "__")
            ))
        };
        if let Some(value) = self.config.get(&path) {
            key.kind.check(value).map_err(&wrong)?;
            return value_as(value).map_err(wrong);
        }
        if let Some(default) = key.default {
            let parsed: toml::Value = format!("v = {default}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| {
                    wrong(format!(
                        "the declared default {default} is not a TOML value"
                    ))
                })?;
            return value_as(&parsed).map_err(wrong);
        }
        T::deserialize(serde_json::Value::Null).map_err(|_| {
            wrong(if key.optional {
                "not set: it is optional, so ask for an `Option<_>`".to_string()
            } else {
                "required, and not set".to_string()
            })
        })
    }

    /// Whether the declared key `key` has a usable value.
    pub fn config_status(&self, key: &ConfigKey) -> ConfigStatus {
        match self.config.get(&self.config_path(key.name)) {
            Some(value) => match key.kind.check(value) {
                Ok(()) => ConfigStatus::Set,
                Err(why) => ConfigStatus::Invalid(why),
            },
            None if key.default.is_some() => ConfigStatus::Default,
            None if key.optional => ConfigStatus::Unset,
            None => ConfigStatus::Missing,
        }
    }

    /// The declared secret `name`; errors name the source (undeclared, or not set).
    pub fn secret(&self, name: &str) -> Result<Secret> {
        if self.source.secret(name).is_none() {
            let declared: Vec<&str> = self.source.secrets.iter().map(|s| s.name).collect();
            return Err(Error::permanent(format!(
                "source `{}` declares no secret `{name}` (it declares: {}); declare it in its `kye::source!`",
                self.source.name,
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            )));
        }
        self.secrets
            .require(name)
            .map_err(|e| e.context(format!("source `{}`", self.source.name)))
    }

    /// Whether the declared secret `name` is set.
    pub fn secret_status(&self, name: &str) -> SecretStatus {
        let optional = self.source.secret(name).is_some_and(|s| s.optional);
        match (self.secrets.get(name).is_some(), optional) {
            (true, _) => SecretStatus::Set,
            (false, true) => SecretStatus::Unset,
            (false, false) => SecretStatus::Missing,
        }
    }

    /// The configuration problems: each required key or secret that is missing, each value of
    /// the wrong type, as one-line messages naming the key (never a value).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for key in self.source.config {
            match self.config_status(key) {
                ConfigStatus::Missing => out.push(format!(
                    "missing config `{}` (set {} in kye.toml)",
                    key.name,
                    self.config_path(key.name)
                )),
                ConfigStatus::Invalid(why) => out.push(format!(
                    "config `{}` ({}): {why}",
                    key.name,
                    self.config_path(key.name)
                )),
                _ => {}
            }
        }
        for secret in self.source.secrets {
            if self.secret_status(secret.name) == SecretStatus::Missing {
                out.push(format!("missing secret `{}`", secret.name));
            }
        }
        out
    }
}

/// The authentication a source's declared secrets make, to send to its hosts: the set secrets
/// as [`Auth`]s, and the names of the required ones that are not set (a request to the
/// source's hosts then fails naming them, rather than going out without credentials).
pub(crate) fn auth_of(env: &SourceEnv<'_>) -> Result<(Vec<Auth>, Vec<&'static str>)> {
    let mut auths = Vec::new();
    let mut missing = Vec::new();
    for s in env.source.secrets {
        if matches!(s.send, SendAs::Fetcher) {
            continue;
        }
        let Some(value) = env.secrets.get(s.name) else {
            if !s.optional {
                missing.push(s.name);
            }
            continue;
        };
        let place = || format!("source `{}`, secret `{}`", env.source.name, s.name);
        auths.push(match s.send {
            SendAs::Bearer => Auth::Bearer(value),
            SendAs::Header(name) => Auth::Header {
                name: reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::permanent(format!("{}: invalid header name {name:?}", place()))
                })?,
                value,
            },
            SendAs::Query(name) => {
                crate::redact::register_sensitive_param(name);
                Auth::Query {
                    name: name.to_string(),
                    value,
                }
            }
            SendAs::Basic { username } => {
                let user = match username {
                    BasicUser::Literal(u) => u.to_string(),
                    BasicUser::Config(key) => env
                        .config::<Option<String>>(key)?
                        .ok_or_else(|| {
                            Error::permanent(format!(
                                "{}: the user name of basic authentication, config `{key}`, is not set",
                                place()
                            ))
                        })?,
                };
                Auth::Basic {
                    username: Secret::new(user),
                    password: value,
                }
            }
            SendAs::Fetcher => continue,
        });
    }
    Ok((auths, missing))
}
