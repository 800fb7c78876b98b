//! Choosing a PostgreSQL store: [`PgSpec`] from a `postgres://` URL (`--db`, kye.toml's
//! `store`), its password (URL, `PGPASSWORD` or a kye secret) and how it is shown without it.

use std::fmt;
use std::time::Duration;

use crate::store::StoreError;

/// TLS towards the server, as libpq's `sslmode` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, certificate not verified (libpq's default); with
    /// `sslrootcert`, the chain is verified as `verify-ca` when TLS is used (as in libpq).
    Prefer,
    /// TLS or no connection; the certificate is not verified, unless `sslrootcert` names a
    /// file: then the chain is verified as `verify-ca` (libpq's rule for a root certificate).
    Require,
    /// TLS, the certificate chain verified against the root certificates of the file
    /// `sslrootcert` names (required: the system's would pass any certificate they trust for
    /// some name), not the host name.
    VerifyCa,
    /// TLS, the certificate verified against the root certificates (`sslrootcert`, else the
    /// system's) and the host name.
    VerifyFull,
}

impl SslMode {
    /// As in the URL: `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL store: where the server is, which database and schema, and how to log in.
///
/// `Display` and `Debug` never show the password: `postgres://kye@db:5432/warehouse?schema=raw`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgSpec {
    /// Login role (URL user, else `PGUSER`, else `USER`, else `postgres`).
    pub user: String,
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// PostgreSQL schema kye's tables live in (`?schema=`, default `public`).
    pub schema: String,
    /// TLS (`?sslmode=`, default `prefer`).
    pub sslmode: SslMode,
    /// Name of the kye secret holding the password (`?password_secret=`).
    pub password_secret: Option<String>,
    /// PEM file of the root certificates verifying modes trust (`?sslrootcert=`; default, or
    /// `system`: the system's). A file makes `require` verify the chain, as in libpq.
    pub sslrootcert: Option<std::path::PathBuf>,
    /// Seconds to wait for the server (`?connect_timeout=`, default 10).
    pub connect_timeout: u64,
    /// The password written in the URL (never shown).
    url_password: Option<String>,
}

impl fmt::Debug for PgSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgSpec({self})")
    }
}

/// Percent-encodes the bytes of `s` that cannot stand in a URL part as they are.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for PgSpec {
    /// The URL without the password; parameters that differ from the defaults are kept so the
    /// text parses back to the same store.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(
            f,
            "postgres://{}@{host}:{}/{}",
            encode(&self.user),
            self.port,
            encode(&self.database)
        )?;
        let mut params = Vec::new();
        if self.schema != "public" {
            params.push(format!("schema={}", encode(&self.schema)));
        }
        if self.sslmode != SslMode::Prefer {
            params.push(format!("sslmode={}", self.sslmode.as_str()));
        }
        if let Some(s) = &self.password_secret {
            params.push(format!("password_secret={}", encode(s)));
        }
        if let Some(p) = &self.sslrootcert {
            params.push(format!("sslrootcert={}", encode(&p.to_string_lossy())));
        }
        if self.connect_timeout != DEFAULT_CONNECT_TIMEOUT {
            params.push(format!("connect_timeout={}", self.connect_timeout));
        }
        if !params.is_empty() {
            write!(f, "?{}", params.join("&"))?;
        }
        Ok(())
    }
}

const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

/// Said with every error of a store URL: a password written as is must not hold the
/// characters that end its part of the URL.
const ENCODE_HINT: &str = " (a password holding `/`, `?`, `@` or `:` must be percent-encoded: \
                           %2F, %3F, %40, %3A)";

impl PgSpec {
    /// Parses `postgres://[USER[:PASSWORD]@]HOST[:PORT][/DB][?schema=..&sslmode=..]` (also
    /// `postgresql://`). The userinfo runs to the last `@` before the query, so a password
    /// written as is may hold `/`, `:` and `@` (not `?`). Error messages show the parts
    /// parsed, never the text as written, and any text that may be the password is
    /// registered with the redactor before the first error.
    pub fn parse(text: &str) -> Result<PgSpec, StoreError> {
        let decode = crate::redact::percent_decode;
        let (scheme, rest) = text.split_once("://").unwrap_or(("postgres", ""));
        let scheme = if scheme == "postgresql" {
            "postgresql"
        } else {
            "postgres"
        };
        // Every text that may be the password is registered before anything can fail, so no
        // message below shows it: the userinfo up to the last `@` before the query, and up
        // to the last `@` of all (a password holding `?` unencoded).
        let query_at = rest.find('?').unwrap_or(rest.len());
        for end in [rest[..query_at].rfind('@'), rest.rfind('@')]
            .into_iter()
            .flatten()
        {
            if let Some((_, pw)) = rest[..end].split_once(':') {
                crate::redact::register_sensitive_value(pw);
                crate::redact::register_sensitive_value(&decode(pw));
            }
        }
        // Messages show the parts parsed so far, never the text as written.
        let mut shown = format!("{scheme}://…");
        let bad = |shown: &str, message: &str| StoreError::InvalidSpec {
            spec: shown.to_string(),
            message: format!("{message}{ENCODE_HINT}"),
        };
        if !text.contains("://") {
            return Err(bad(&shown, "expected postgres://USER@HOST:PORT/DATABASE"));
        }
        let (before_query, query) = rest.split_at(query_at);
        let query = query.strip_prefix('?');
        // The userinfo ends at the last `@` before the query: a password may hold `/` or `@`
        // as written; the host, port and database hold neither.
        let (userinfo, after) = match before_query.rfind('@') {
            Some(at) => (Some(&before_query[..at]), &before_query[at + 1..]),
            None => (None, before_query),
        };
        if userinfo.is_none() && query.is_some_and(|q| q.contains('@')) {
            return Err(bad(&shown, "`@` after `?`"));
        }
        let (hostport, path) = after.split_once('/').unwrap_or((after, ""));
        let (user, url_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (Some(decode(name)), Some(decode(pw))),
                None => (Some(decode(u)), None),
            },
            None => (None, None),
        };
        if let Some(u) = user.as_deref().filter(|u| !u.is_empty()) {
            shown = format!("{scheme}://{}@…", encode(u));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad(&shown, "an IPv6 host needs a closing `]`"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.contains(',') {
            return Err(bad(&shown, "several hosts are not supported; name one"));
        }
        let host = if host.is_empty() {
            "localhost".to_string()
        } else {
            decode(&host)
        };
        let port = match port {
            None | Some("") => 5432,
            // The text is not shown: it may be a piece of a password.
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad(&shown, "the port is not a number from 1 to 65535"))?,
        };
        let user = user
            .filter(|u| !u.is_empty())
            .or_else(|| std::env::var("PGUSER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "postgres".to_string());
        let database = if path.is_empty() {
            user.clone()
        } else {
            decode(path)
        };
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let shown = format!(
            "{scheme}://{}@{shown_host}:{port}/{}",
            encode(&user),
            encode(&database)
        );
        let bad = |message: String| StoreError::InvalidSpec {
            spec: shown.clone(),
            message,
        };
        let mut spec = PgSpec {
            user,
            host,
            port,
            database,
            schema: "public".to_string(),
            sslmode: SslMode::Prefer,
            password_secret: None,
            sslrootcert: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            url_password: url_password.filter(|p| !p.is_empty()),
        };
        let mut sslmode_given = false;
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v);
            match k {
                "schema" | "search_path" if !v.is_empty() => spec.schema = v,
                "sslmode" => {
                    sslmode_given = true;
                    spec.sslmode = match v.as_str() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(bad(format!(
                                "sslmode={other:?}: use disable, prefer, require, verify-ca or \
                                 verify-full"
                            )))
                        }
                    }
                }
                "password_secret" if !v.is_empty() => spec.password_secret = Some(v),
                "sslrootcert" if !v.is_empty() => spec.sslrootcert = Some(v.into()),
                // Empty: not given (libpq's reading of an empty sslrootcert).
                "sslrootcert" => {}
                // Empty: a mistake, not a default (an empty schema is not `public`, an empty
                // secret name not `PGPASSWORD`).
                "schema" | "search_path" | "password_secret" => {
                    return Err(bad(format!(
                        "{k}= is empty: name one, or leave the parameter out{}",
                        match k {
                            "password_secret" =>
                                " (the password then comes from the URL or \
                                                  PGPASSWORD)",
                            _ => " (for the schema public)",
                        }
                    )))
                }
                "connect_timeout" => {
                    spec.connect_timeout = v
                        .parse()
                        .map_err(|_| bad(format!("connect_timeout={v:?} is not seconds")))?
                }
                "application_name" => {}
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?}; supported: schema, sslmode, \
                         sslrootcert, password_secret, connect_timeout"
                    )))
                }
            }
        }
        // libpq: the system's roots vouch for anyone who controls a name, so they mean
        // something only with the name checked.
        if spec.sslrootcert.as_deref() == Some(std::path::Path::new(super::tls::SYSTEM_ROOTS)) {
            match (sslmode_given, spec.sslmode) {
                (false, _) => spec.sslmode = SslMode::VerifyFull,
                (true, SslMode::VerifyFull) => {}
                (true, weaker) => {
                    return Err(bad(format!(
                        "sslrootcert=system needs sslmode=verify-full (any certificate the \
                         system trusts for some name would pass sslmode={}), as in libpq",
                        weaker.as_str()
                    )))
                }
            }
        }
        // libpq fails without a root certificate file too (it looks for root.crt).
        if spec.sslmode == SslMode::VerifyCa && spec.sslrootcert.is_none() {
            return Err(bad(
                "sslmode=verify-ca needs sslrootcert=FILE, the PEM file of the root \
                 certificates that signed the server's certificate: the host name is not \
                 checked, so the system's roots would pass any certificate they trust for some \
                 name (use sslmode=verify-full to verify against the system's roots)"
                    .into(),
            ));
        }
        if spec.database.contains('\0') || spec.schema.contains('\0') {
            return Err(bad("names cannot contain NUL".into()));
        }
        // PostgreSQL cuts longer names to 63 bytes: two specs would share one schema under
        // two lock classes, and their writers would not take turns.
        if spec.schema.len() > 63 {
            return Err(bad(format!(
                "schema name is {} bytes; PostgreSQL keeps at most 63 bytes of a name, so use \
                 a shorter one",
                spec.schema.len()
            )));
        }
        Ok(spec)
    }

    /// `kye SCHEMA` (cut to 63 bytes): what `pg_stat_activity` shows for kye's connections.
    pub fn application_name(&self) -> String {
        let mut name = format!("kye {}", self.schema);
        let mut cut = name.len().min(63);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name
    }

    /// `host:port/database`, for messages.
    pub fn server(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// Takes the password from `secrets` when the URL names a `password_secret` and holds no
    /// password itself: the secrets every other secret of a runtime comes from (the ones given
    /// to its builder; else the environment, then the secrets file `KYE_SECRETS_FILE` or
    /// kye.toml's `secrets.file` names). A secret found there nowhere is an error naming it
    /// (never its value); nothing else is looked at.
    pub fn resolve_password(
        &mut self,
        secrets: &crate::secrets::Secrets,
    ) -> Result<(), StoreError> {
        if self.url_password.is_some() {
            return Ok(());
        }
        let Some(name) = self.password_secret.clone() else {
            return Ok(());
        };
        let secret = secrets
            .require(&name)
            .map_err(|e| self.secret_error(&name, &e.to_string()))?;
        crate::redact::register_sensitive_value(secret.expose());
        self.url_password = Some(secret.expose().to_string());
        Ok(())
    }

    fn secret_error(&self, name: &str, why: &str) -> StoreError {
        StoreError::InvalidSpec {
            spec: self.to_string(),
            message: format!("password_secret={name}: {why}"),
        }
    }

    /// The password: from the URL (or resolved by [`PgSpec::resolve_password`]), else, for a
    /// spec no runtime resolved (a store opened with [`open_store`](crate::store::open_store)
    /// alone), the kye secret `password_secret` names from the process environment, then the
    /// secrets file of `KYE_SECRETS_FILE`, else `PGPASSWORD`.
    /// Registered with the redactor so no message kye writes can show it.
    pub(crate) fn password(&self) -> Result<Option<String>, StoreError> {
        let pw = if let Some(pw) = &self.url_password {
            Some(pw.clone())
        } else if let Some(name) = &self.password_secret {
            let file = std::env::var_os("KYE_SECRETS_FILE").map(std::path::PathBuf::from);
            let secrets = crate::secrets::Secrets::load(std::env::vars(), file.as_deref())
                .map_err(|e| self.secret_error(name, &e.to_string()))?;
            let secret = secrets
                .require(name)
                .map_err(|e| self.secret_error(name, &e.to_string()))?;
            Some(secret.expose().to_string())
        } else {
            std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty())
        };
        if let Some(p) = &pw {
            crate::redact::register_sensitive_value(p);
        }
        Ok(pw)
    }

    /// The client configuration (password included; never shown).
    pub(crate) fn config(&self) -> Result<postgres::Config, StoreError> {
        let mut c = postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name(&self.application_name())
            .connect_timeout(Duration::from_secs(self.connect_timeout.max(1)))
            // A server that vanished (half-open connection) is noticed within about a
            // minute, not after the system's two hours of TCP keepalive.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(60))
            .ssl_mode(match self.sslmode {
                SslMode::Disable => postgres::config::SslMode::Disable,
                SslMode::Prefer => postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                    postgres::config::SslMode::Require
                }
            });
        if let Some(pw) = self.password()? {
            c.password(pw);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_show_without_password() {
        let s =
            PgSpec::parse("postgres://kye:s3cr%40t@db.example:6543/wh?schema=raw&sslmode=require")
                .unwrap();
        assert_eq!(
            (
                s.user.as_str(),
                s.host.as_str(),
                s.port,
                s.database.as_str()
            ),
            ("kye", "db.example", 6543, "wh")
        );
        assert_eq!((s.schema.as_str(), s.sslmode), ("raw", SslMode::Require));
        assert_eq!(s.password().unwrap().as_deref(), Some("s3cr@t"));
        let shown = s.to_string();
        assert_eq!(
            shown,
            "postgres://kye@db.example:6543/wh?schema=raw&sslmode=require"
        );
        assert!(!format!("{s:?}").contains("s3cr"));
        let again = PgSpec::parse(&shown).unwrap();
        assert_eq!(
            (again.schema.as_str(), again.sslmode),
            ("raw", SslMode::Require)
        );
        let d = PgSpec::parse("postgresql://u@h").unwrap();
        assert_eq!(
            (d.port, d.database.as_str(), d.schema.as_str()),
            (5432, "u", "public")
        );
        let e = PgSpec::parse("postgres://u:hunter2@h/db?nope=1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown parameter \"nope\"") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(PgSpec::parse("postgres://h:99999/db").is_err());
        assert!(PgSpec::parse("postgres://h/db?sslmode=maybe").is_err());
        // A kye secret named in the URL: its environment variable, never shown.
        let name = format!("KYE_TEST_PG_SECRET_{}", std::process::id());
        let s = PgSpec::parse(&format!("postgres://u@h/db?password_secret={name}")).unwrap();
        let e = s.password().unwrap_err().to_string();
        assert!(e.contains(&name), "{e}");
        std::env::set_var(&name, "from-the-secret");
        assert_eq!(s.password().unwrap().as_deref(), Some("from-the-secret"));
        assert!(!s.to_string().contains("from-the-secret"));
        assert!(crate::redact::redact_text("x from-the-secret y").contains("[redacted]"));
        std::env::remove_var(&name);
        let v6 = PgSpec::parse("postgres://u@[::1]:5433/db").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 5433));
        assert_eq!(v6.to_string(), "postgres://u@[::1]:5433/db");
    }

    #[test]
    fn sslrootcert_parses_and_shows_and_system_needs_verify_full() {
        let s = PgSpec::parse(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fetc%2Fkye%2Fca%20roots.pem",
        )
        .unwrap();
        assert_eq!(
            s.sslrootcert.as_deref(),
            Some(std::path::Path::new("/etc/kye/ca roots.pem"))
        );
        assert_eq!(s.sslmode, SslMode::VerifyCa);
        let shown = s.to_string();
        assert!(
            shown.ends_with("&sslrootcert=%2Fetc%2Fkye%2Fca%20roots.pem"),
            "{shown}"
        );
        assert_eq!(PgSpec::parse(&shown).unwrap(), s);
        // An empty value names nothing.
        assert_eq!(
            PgSpec::parse("postgres://u@h/db?sslrootcert=")
                .unwrap()
                .sslrootcert,
            None
        );
        // `system`: the system's roots, which mean something only with the name checked.
        let system = PgSpec::parse("postgres://u@h/db?sslrootcert=system").unwrap();
        assert_eq!(system.sslmode, SslMode::VerifyFull);
        assert!(PgSpec::parse("postgres://u@h/db?sslrootcert=system&sslmode=verify-full").is_ok());
        for weaker in ["disable", "prefer", "require", "verify-ca"] {
            let e = PgSpec::parse(&format!(
                "postgres://u@h/db?sslmode={weaker}&sslrootcert=system"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("needs sslmode=verify-full"), "{e}");
        }
        // A file called `system` is `./system`.
        let file =
            PgSpec::parse("postgres://u@h/db?sslmode=require&sslrootcert=.%2Fsystem").unwrap();
        assert_eq!(file.sslmode, SslMode::Require);
    }

    /// `verify-ca` checks no name, so the system's roots would pass anyone's certificate: it
    /// needs a root certificate file, as in libpq (which looks for root.crt).
    #[test]
    fn verify_ca_needs_a_root_certificate_file() {
        for url in [
            "postgres://u@h/db?sslmode=verify-ca",
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=",
        ] {
            let e = PgSpec::parse(url).unwrap_err().to_string();
            assert!(
                e.contains("sslmode=verify-ca needs sslrootcert=FILE"),
                "{url}: {e}"
            );
        }
        assert!(PgSpec::parse("postgres://u@h/db?sslmode=verify-full").is_ok());
        assert!(PgSpec::parse("postgres://u@h/db?sslmode=verify-ca&sslrootcert=ca.pem").is_ok());
    }

    /// An empty schema, search_path or password_secret is a mistake, not `public` or
    /// `PGPASSWORD`; only an empty sslrootcert means "not given".
    #[test]
    fn empty_names_are_refused_naming_the_parameter() {
        for k in ["schema", "search_path", "password_secret"] {
            let e = PgSpec::parse(&format!("postgres://u:hunter2@h/db?{k}="))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("{k}= is empty")), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let s = PgSpec::parse("postgres://u@h/db?sslrootcert=&schema=s").unwrap();
        assert_eq!((s.sslrootcert, s.schema.as_str()), (None, "s"));
    }

    #[test]
    fn schema_names_longer_than_postgresql_keeps_are_refused() {
        let ok = "s".repeat(63);
        assert_eq!(
            PgSpec::parse(&format!("postgres://u@h/db?schema={ok}"))
                .unwrap()
                .schema,
            ok
        );
        // 64 bytes, also when the 64th is inside a multi-byte character.
        for long in ["s".repeat(64), format!("{}é", "s".repeat(62))] {
            let e = PgSpec::parse(&format!("postgres://u@h/db?schema={long}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("63 bytes") && e.contains("64 bytes"), "{e}");
        }
    }

    #[test]
    fn a_password_written_as_is_never_reaches_an_error() {
        for (url, pw, db) in [
            ("postgres://u:ab/cd@h/db", "ab/cd", "db"),
            ("postgres://u:12/34@h/db", "12/34", "db"),
            ("postgres://u:p@ss:w/rd@h:6000/db", "p@ss:w/rd", "db"),
        ] {
            let s = PgSpec::parse(url).unwrap();
            assert_eq!(s.password().unwrap().as_deref(), Some(pw), "{url}");
            assert_eq!((s.host.as_str(), s.database.as_str()), ("h", db), "{url}");
            assert!(!s.to_string().contains(pw) && !format!("{s:?}").contains(pw));
        }
        for (url, pw) in [
            ("postgres://u:ab/cd@h:xy/db", "ab/cd"),
            ("postgres://u:12/34@h/db?nope=1", "12/34"),
            ("postgres://u:12/34@h/db?sslmode=maybe", "12/34"),
            ("postgres://u:ab?cd/ef@h/db", "ab?cd/ef"),
            ("postgres://u:gh/ij@[::1/db", "gh/ij"),
            ("postgres://u:kl/mn@h,i/db", "kl/mn"),
        ] {
            let e = PgSpec::parse(url).unwrap_err();
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(pw), "{url}: {shown}");
            for piece in pw.split(['/', '?']) {
                assert!(!shown.contains(piece), "{url}: {shown}");
            }
            assert!(
                shown.contains("percent-encoded")
                    || shown.contains("nope")
                    || shown.contains("maybe"),
                "{shown}"
            );
        }
    }
}
