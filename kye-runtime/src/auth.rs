//! Authentication applied by the shared HTTP client, configured per host or per fetcher.
//!
//! ```toml
//! [hosts."api.example.com".auth]        # every request to this host
//! type = "bearer"                       # Authorization: Bearer <secret>
//! secret = "EXAMPLE_TOKEN"              # name of the secret, never the value
//!
//! [hosts."127.0.0.1:8080".auth]         # host:port is matched before host
//! type = "header"                       # <name>: <secret>
//! name = "X-Api-Key"
//! secret = "LOCAL_KEY"
//!
//! [fetchers."weather::by_city".auth]    # only requests made by this fetcher (wins over host)
//! type = "query"                        # ?<name>=<secret> appended to the URL
//! name = "appid"
//! secret = "WEATHER_KEY"
//!
//! [hosts."intranet.local".auth]
//! type = "basic"                        # Authorization: Basic base64(user:password)
//! username = "reporter"                 # or username_secret = "NAME"
//! secret = "INTRANET_PASSWORD"
//! ```
//!
//! Secrets are resolved when the runtime is built, so a missing one is reported up front with its
//! name. Header values are marked sensitive (hyper does not log them), query parameters used for
//! authentication are redacted from every URL kye shows, and nothing here is ever logged.

use std::collections::HashMap;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::Url;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::redact::{base64, register_sensitive_param, register_sensitive_value};
use crate::secrets::{Secret, Secrets};
use crate::source::{auth_of, SourceEnv, SourceRegistration, Sources};

/// One way of authenticating requests, with its secret values resolved.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// A custom header carrying the key.
    Header {
        /// Header name, e.g. `X-Api-Key`.
        name: HeaderName,
        /// Header value.
        value: Secret,
    },
    /// A query parameter carrying the key.
    Query {
        /// Parameter name, e.g. `api_key`.
        name: String,
        /// Parameter value.
        value: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name (not secret, but may come from a secret).
        username: Secret,
        /// Password.
        password: Secret,
    },
}

impl Auth {
    /// Reads one `auth` table (see the module docs). `place` names it in errors.
    pub fn from_table(table: &toml::Table, secrets: &Secrets, place: &str) -> Result<Self> {
        let field = |key: &str| -> Result<&str> {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .ok_or_else(|| Error::permanent(format!("{place}: missing string field `{key}`")))
        };
        let secret = |key: &str| -> Result<Secret> {
            let name = field(key)?;
            secrets.require(name).map_err(|e| e.context(place))
        };
        let kind = field("type")?;
        match kind {
            "bearer" => Ok(Auth::Bearer(secret("secret")?)),
            "header" => {
                let name = field("name")?;
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::permanent(format!("{place}: invalid header name {name:?}"))
                })?;
                Ok(Auth::Header {
                    name,
                    value: secret("secret")?,
                })
            }
            "query" => {
                let name = field("name")?.to_string();
                register_sensitive_param(&name);
                Ok(Auth::Query {
                    name,
                    value: secret("secret")?,
                })
            }
            "basic" => {
                let username = match table.get("username_secret") {
                    Some(_) => secret("username_secret")?,
                    None => Secret::new(field("username")?.to_string()),
                };
                Ok(Auth::Basic {
                    username,
                    password: secret("secret")?,
                })
            }
            other => Err(Error::permanent(format!(
                "{place}: unknown auth type {other:?} (use bearer, header, query or basic)"
            ))),
        }
    }

    /// Applies this authentication to a request under construction.
    pub fn apply(&self, url: &mut Url, headers: &mut reqwest::header::HeaderMap) -> Result<()> {
        let sensitive = |v: String| -> Result<HeaderValue> {
            let mut hv = HeaderValue::from_str(&v).map_err(|_| {
                Error::permanent(
                    "an authentication secret contains characters not allowed in a header",
                )
            })?;
            hv.set_sensitive(true);
            Ok(hv)
        };
        match self {
            Auth::Bearer(token) => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(format!("Bearer {}", token.expose()))?,
                );
            }
            Auth::Header { name, value } => {
                headers.insert(name.clone(), sensitive(value.expose().to_string())?);
            }
            Auth::Query { name, value } => {
                url.query_pairs_mut().append_pair(name, value.expose());
            }
            Auth::Basic { username, password } => {
                let raw = format!("{}:{}", username.expose(), password.expose());
                let encoded = base64(raw.as_bytes());
                // What is sent is the base64, not the password: redact that form too.
                register_sensitive_value(&encoded);
                headers.insert(AUTHORIZATION, sensitive(format!("Basic {encoded}"))?);
            }
        }
        Ok(())
    }
}

/// Authentication for every configured host and fetcher.
#[derive(Clone, Debug, Default)]
pub struct AuthTable {
    hosts: HashMap<String, Auth>,
    fetchers: HashMap<String, Auth>,
    /// What declared sources send to their hosts (`kye::source!`), after kye.toml's own.
    sources: Vec<SourceAuth>,
}

/// The authentication of one declared source, for its hosts only.
#[derive(Clone, Debug)]
struct SourceAuth {
    source: &'static SourceRegistration,
    auths: Vec<Auth>,
    /// Required secrets that are not set: a request to the source's hosts fails naming them.
    missing: Vec<&'static str>,
}

impl AuthTable {
    /// Reads `[hosts.<host>.auth]` and `[fetchers.<name>.auth]` from the configuration.
    pub fn from_config(config: &Config, secrets: &Secrets) -> Result<Self> {
        let mut table = AuthTable::default();
        for (section, map) in [
            ("hosts", &mut table.hosts),
            ("fetchers", &mut table.fetchers),
        ] {
            let Some(entries) = config.table(section) else {
                continue;
            };
            for (name, entry) in entries {
                let Some(auth) = entry.as_table().and_then(|t| t.get("auth")) else {
                    continue;
                };
                let place = format!("[{section}.\"{name}\".auth] in kye.toml");
                let auth = auth
                    .as_table()
                    .ok_or_else(|| Error::permanent(format!("{place}: expected a table")))?;
                map.insert(name.clone(), Auth::from_table(auth, secrets, &place)?);
            }
        }
        Ok(table)
    }

    /// Adds authentication for a host (`host` or `host:port`).
    pub fn insert_host(&mut self, host: impl Into<String>, auth: Auth) {
        if let Auth::Query { name, .. } = &auth {
            register_sensitive_param(name);
        }
        self.hosts.insert(host.into(), auth);
    }

    /// Adds authentication for a fetcher (by its registered name).
    pub fn insert_fetcher(&mut self, fetcher: impl Into<String>, auth: Auth) {
        if let Auth::Query { name, .. } = &auth {
            register_sensitive_param(name);
        }
        self.fetchers.insert(fetcher.into(), auth);
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.fetchers.is_empty() && self.sources.is_empty()
    }

    /// Adds the authentication the declared `sources` send to their hosts, with the secrets
    /// (and, for a basic user name, the configuration) in force. A required secret that is not
    /// set is not an error here: `kye sources check` and `fetch` report it, and a request to
    /// the source's hosts fails naming it.
    pub(crate) fn add_sources(
        &mut self,
        sources: &Sources,
        config: &Config,
        secrets: &Secrets,
    ) -> Result<()> {
        for source in sources.iter() {
            let (auths, missing) = auth_of(&SourceEnv::new(source, config, secrets))?;
            if !auths.is_empty() || !missing.is_empty() {
                self.sources.push(SourceAuth {
                    source,
                    auths,
                    missing,
                });
            }
        }
        Ok(())
    }

    /// Applies the authentication for a request of `fetcher` (a context's scope) to `url`:
    /// kye.toml's for the fetcher or the host ([`AuthTable::lookup`]) when configured, else
    /// that of the declared source the request goes to (the scope's own source first), sent to
    /// that source's declared hosts only.
    pub(crate) fn apply(
        &self,
        fetcher: Option<&str>,
        source: Option<&'static SourceRegistration>,
        url: &mut Url,
        headers: &mut reqwest::header::HeaderMap,
    ) -> Result<()> {
        if let Some(auth) = self.lookup(fetcher, url) {
            return auth.apply(url, headers);
        }
        let (host, port) = match url.host_str() {
            Some(h) => (h.to_string(), url.port_or_known_default()),
            None => return Ok(()),
        };
        let own = self.sources.iter().find(|s| {
            source.is_some_and(|o| std::ptr::eq(o, s.source)) && s.source.talks_to(&host, port)
        });
        let Some(found) =
            own.or_else(|| self.sources.iter().find(|s| s.source.talks_to(&host, port)))
        else {
            return Ok(());
        };
        // A source's credentials travel over https; over plain http only to this machine or
        // to a host its declaration names with the port (a deliberate choice of its author),
        // never because an `http://` link (a next page, a redirect) named a declared host.
        if url.scheme() != "https"
            && !is_loopback(&host)
            && !found.source.declares_port(&host, port)
        {
            return Err(Error::permanent(format!(
                "source `{}`: refusing to send its credentials to {host} over plain {}: use https, \
                 or declare the host with its port in the source's hosts",
                found.source.name,
                url.scheme()
            )));
        }
        if let Some(name) = found.missing.first() {
            return Err(Error::permanent(format!(
                "source `{}`: secret {name} is not set, so requests to {host} cannot authenticate: \
                 export {name}=... or add it to the secrets file (`kye sources check` lists what is missing)",
                found.source.name
            )));
        }
        for auth in &found.auths {
            auth.apply(url, headers)?;
        }
        Ok(())
    }

    /// The authentication for a request: the fetcher's if configured, else the host's
    /// (`host:port` before `host`).
    pub fn lookup(&self, fetcher: Option<&str>, url: &Url) -> Option<&Auth> {
        if let Some(a) = fetcher.and_then(|f| self.fetchers.get(f)) {
            return Some(a);
        }
        let host = url.host_str()?;
        if let Some(port) = url.port_or_known_default() {
            if let Some(a) = self.hosts.get(&format!("{host}:{port}")) {
                return Some(a);
            }
        }
        self.hosts.get(host)
    }
}

/// `localhost`, `127.x.x.x` or `::1`.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sources_credentials_go_over_https_or_to_a_host_declared_with_its_port() {
        use crate::source::{SecretKey, SendAs, SourceMember, SourceRegistration, Sources};
        static SECRETS: [SecretKey; 1] = [SecretKey {
            name: "CAT_TOKEN",
            send: SendAs::Bearer,
            optional: false,
            description: "the API token",
        }];
        static CATS: SourceRegistration = SourceRegistration {
            name: "cats",
            description: "cats",
            crate_name: "tests",
            version: "0.1.0",
            hosts: &["api.cats.example", "intranet.example:8080"],
            config: &[],
            secrets: &SECRETS,
            probe: None,
            module_path: "tests",
            file: "auth.rs",
            line: 1,
        };
        let sources =
            Sources::from_parts([&CATS], std::iter::empty::<&'static SourceMember>()).unwrap();
        let mut secrets = Secrets::empty();
        secrets.insert("CAT_TOKEN", "t0ken-value");
        let config = Config::from_toml_str("", None).unwrap();
        let mut table = AuthTable::default();
        table.add_sources(&sources, &config, &secrets).unwrap();
        let send = |u: &str| {
            let mut url = Url::parse(u).unwrap();
            let mut headers = reqwest::header::HeaderMap::new();
            table
                .apply(None, None, &mut url, &mut headers)
                .map(|()| headers.contains_key(reqwest::header::AUTHORIZATION))
        };
        assert!(send("https://api.cats.example/cats/1").unwrap());
        let refused = send("http://api.cats.example/cats/1")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("plain http") && !refused.contains("t0ken"),
            "{refused}"
        );
        assert!(send("http://intranet.example:8080/cats/1").unwrap());
        assert!(send("http://intranet.example:9090/cats/1").is_ok_and(|sent| !sent));
        assert!(send("https://other.example/").is_ok_and(|sent| !sent));
    }

    #[test]
    fn loopback_hosts_are_told_apart_from_others() {
        for h in ["localhost", "127.0.0.1", "127.8.9.1", "[::1]", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1", "127.0.0.1.example.com", "[::2]"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn config_resolves_and_reports_missing_secret_by_name() {
        let config = Config::from_toml_str(
            r#"
            [hosts."127.0.0.1:8080".auth]
            type = "bearer"
            secret = "LOCAL_TOKEN"
            [fetchers."f1".auth]
            type = "query"
            name = "appid"
            secret = "APPID"
            "#,
            None,
        )
        .unwrap();
        let mut secrets = Secrets::empty();
        secrets.insert("LOCAL_TOKEN", "tok-123456");
        let err = AuthTable::from_config(&config, &secrets)
            .unwrap_err()
            .to_string();
        assert!(err.contains("APPID") && err.contains("fetchers"), "{err}");
        secrets.insert("APPID", "appid-987654");
        let table = AuthTable::from_config(&config, &secrets).unwrap();
        let url = Url::parse("http://127.0.0.1:8080/x").unwrap();
        assert!(matches!(table.lookup(None, &url), Some(Auth::Bearer(_))));
        assert!(matches!(
            table.lookup(Some("f1"), &url),
            Some(Auth::Query { .. })
        ));
        let other = Url::parse("http://127.0.0.1:9090/x").unwrap();
        assert!(table.lookup(None, &other).is_none());
        let dbg = format!("{table:?}");
        assert!(
            !dbg.contains("tok-123456") && !dbg.contains("appid-987654"),
            "{dbg}"
        );
    }
}
