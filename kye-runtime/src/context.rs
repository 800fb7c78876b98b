//! [`Context`]: what a fetcher gets from kye (HTTP client, configuration, secrets).
//!
//! A `Context` is a cheap handle (an `Arc` inside): clone it freely, move it into tasks. The
//! runtime gives each fetcher call a context scoped to that fetcher (so per-fetcher
//! authentication applies) and to the attempt number.
//!
//! ```no_run
//! # async fn example(ctx: kye_runtime::Context) -> kye_runtime::Result<()> {
//! let base = ctx.config_or("pokeapi.base_url", "https://pokeapi.co/api/v2");
//! let pokemon: serde_json::Value = ctx.get_json_value(&format!("{base}/pokemon/25/")).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;

use crate::auth::AuthTable;
use crate::config::Config;
use crate::error::{ErrorClass, Result};
use crate::exec::CallPolicy;
use crate::http::rate::{HostLimiter, Rate};
use crate::http::{Http, HttpResponse, HttpSettings};
use crate::json_dups::DuplicateNotes;
use crate::secrets::{Secret, Secrets};
use crate::source::{SourceEnv, SourceRegistration, Sources};

/// Shared, cheaply clonable handle given to fetchers.
#[derive(Clone, Default)]
pub struct Context {
    inner: Arc<ContextInner>,
    fetcher: Option<Arc<str>>,
    /// The declared source the fetcher belongs to (`source = name` on its attribute).
    source: Option<&'static SourceRegistration>,
    attempt: u32,
    /// Where [`Context::get_json_value`] notes the keys a body repeated (set by the runtime).
    duplicates: Option<Arc<DuplicateNotes>>,
    /// Set on a context used outside any fetcher ([`crate::Runtime::context`]): its requests
    /// are retried as a fetcher's call would be. A fetcher's own context has none (the
    /// executor retries the whole call).
    retries: Option<Arc<CallPolicy>>,
}

#[derive(Default)]
struct ContextInner {
    config: Config,
    secrets: Secrets,
    http: Http,
    sources: Sources,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("fetcher", &self.fetcher)
            .field("source", &self.source.map(|s| s.name))
            .field("attempt", &self.attempt)
            .field("config_file", &self.inner.config.origin())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context with default settings (no configuration, no secrets).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts building a context from configuration and secrets.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// This context scoped to a fetcher (its authentication and settings apply). Used by the runtime.
    pub fn for_fetcher(&self, fetcher: &str) -> Context {
        Context {
            inner: self.inner.clone(),
            fetcher: Some(Arc::from(fetcher)),
            source: self.inner.sources.source_of(fetcher),
            attempt: self.attempt,
            duplicates: self.duplicates.clone(),
            retries: None,
        }
    }

    /// [`Context::for_fetcher`] with a name the caller already shares (no copy per key).
    pub(crate) fn for_fetcher_name(&self, fetcher: Arc<str>) -> Context {
        Context {
            inner: self.inner.clone(),
            source: self.inner.sources.source_of(&fetcher),
            fetcher: Some(fetcher),
            attempt: self.attempt,
            duplicates: self.duplicates.clone(),
            retries: None,
        }
    }

    /// This context for a given attempt (1 = first try). Used by the executor.
    pub fn with_attempt(&self, attempt: u32) -> Context {
        Context {
            inner: self.inner.clone(),
            fetcher: self.fetcher.clone(),
            source: self.source,
            attempt,
            duplicates: self.duplicates.clone(),
            retries: self.retries.clone(),
        }
    }

    /// The fetcher this context is scoped to, if any.
    pub fn fetcher(&self) -> Option<&str> {
        self.fetcher.as_deref()
    }

    /// The declared source this context's fetcher belongs to, if any.
    pub fn source(&self) -> Option<&'static SourceRegistration> {
        self.source
    }

    /// This context scoped to the declared source `source` with no fetcher (a probe's
    /// `GET`): the source's configuration, secrets and authentication apply.
    pub(crate) fn for_source(&self, source: &'static SourceRegistration) -> Context {
        Context {
            fetcher: None,
            source: Some(source),
            ..self.clone()
        }
    }

    /// The declared source `source` with this context's configuration and secrets
    /// (crate-private: a fetcher reads its own source's values through [`Context::config`]
    /// and [`Context::secret`] only).
    pub(crate) fn source_env(&self, source: &'static SourceRegistration) -> SourceEnv<'_> {
        SourceEnv::new(source, &self.inner.config, &self.inner.secrets)
    }

    /// Which attempt at the current key this is (1 = first try; 0 outside the executor).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    // ---- configuration ----

    /// The value of configuration key `name` as `T`.
    ///
    /// In a fetcher, lister or transformer of a declared source (`source = cats` on its
    /// attribute), `name` is one of the keys the source declares (`ctx.config::<String>("base_url")`):
    /// the value from the source's table in kye.toml (`[cats] base_url = ...`, or
    /// `KYE_CATS__BASE_URL`), else the declared default; an optional key with neither is
    /// `None` when `T` is an `Option`. A key the source does not declare is an error naming the
    /// source. Anywhere else `name` is a dotted key of kye.toml (`"pokeapi.base_url"`); unset
    /// is `None` for an `Option`, an error otherwise.
    pub fn config<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        if let Some(source) = self.source {
            return self.source_env(source).config(name);
        }
        match self.inner.config.get_as::<T>(name)? {
            Some(v) => Ok(v),
            None => T::deserialize(serde_json::Value::Null).map_err(|_| {
                crate::error::Error::permanent(format!(
                    "configuration key `{name}` is not set (kye.toml, or KYE_{} in the environment)",
                    name.to_ascii_uppercase().replace('.', "__")
                ))
            }),
        }
    }

    /// The configuration value at a dotted key of kye.toml (`"pokeapi.base_url"`) as text,
    /// from `kye.toml` or its `KYE_*` environment override, whatever source the context
    /// belongs to.
    pub fn config_str(&self, key: &str) -> Option<String> {
        self.inner.config.get_str(key)
    }

    /// [`Context::config_str`] with a default.
    pub fn config_or(&self, key: &str, default: &str) -> String {
        self.config_str(key).unwrap_or_else(|| default.to_string())
    }

    /// The configuration value at `key` deserialized as `T` (`Ok(None)` when absent; an error
    /// naming the key when it has the wrong type).
    pub fn config_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.inner.config.get_as(key)
    }

    /// The whole configuration, for the typed getters (`get_duration`, `get_size`, ...).
    pub fn settings(&self) -> &Config {
        &self.inner.config
    }

    // ---- secrets ----

    /// The secret called `name` (environment variable, then the secrets file, or a sealed
    /// secret under `kye serve`). In a fetcher of a declared source, `name` must be one of the
    /// secrets the source declares: another is an error naming the source. The error names
    /// the secret and where to set it; the value is never shown.
    pub fn secret(&self, name: &str) -> Result<Secret> {
        match self.source {
            Some(source) => self.source_env(source).secret(name),
            None => self.inner.secrets.require(name),
        }
    }

    // ---- HTTP ----

    /// The shared HTTP machinery (client, limiter, settings).
    pub fn http(&self) -> &Http {
        &self.inner.http
    }

    /// A request builder with this fetcher's or host's authentication applied. Send it with
    /// [`Context::send`] to get rate limiting, status mapping and the body size limit.
    pub fn request(&self, method: Method, url: &str) -> Result<reqwest::RequestBuilder> {
        self.inner
            .http
            .request_for(self.fetcher(), self.source, method, url)
    }

    /// `GET url` once, with this context's authentication (no retries of its own).
    pub(crate) async fn get_response(&self, url: &str) -> Result<HttpResponse> {
        self.inner
            .http
            .get_bytes_for(self.fetcher(), self.source, url)
            .await
    }

    /// Sends a request built by [`Context::request`] (rate limit, status → error class, size limit).
    ///
    /// On a context with retries (the one [`crate::Runtime::context`] hands out) the request is
    /// sent again as long as it can be cloned (a streamed body cannot: such a request is sent
    /// once).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpResponse> {
        match (&self.retries, request.try_clone()) {
            (Some(_), Some(_)) => {
                self.call(|| async {
                    match request.try_clone() {
                        Some(r) => self.inner.http.execute(r).await,
                        None => Err(crate::error::Error::permanent(
                            "the request cannot be sent again",
                        )),
                    }
                })
                .await
            }
            _ => self.inner.http.execute(request).await,
        }
    }

    /// This context with its requests retried by `policy` (tries, backoff, `Retry-After`):
    /// what [`crate::Runtime::context`] hands out, so HTTP calls made outside any fetcher get
    /// the same retries as calls inside one. A context scoped to a fetcher
    /// ([`Context::for_fetcher`]) drops it, since the executor retries the fetcher's whole call.
    pub(crate) fn with_retries(&self, policy: CallPolicy) -> Context {
        Context {
            retries: Some(Arc::new(policy)),
            ..self.clone()
        }
    }

    /// Runs `call` once, or under this context's retry policy when it has one.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        match &self.retries {
            Some(policy) => self.retrying(policy, &mut 0, call).await,
            None => {
                let mut call = call;
                call().await
            }
        }
    }

    /// Runs `attempt` until it succeeds, fails with an error that is not
    /// [`Retryable`](ErrorClass::Retryable), or has been tried `policy.max_attempts` times,
    /// waiting the policy's backoff (or the error's `Retry-After`) in between. The number of
    /// retries it took is added to `retries`.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        policy: &CallPolicy,
        retries: &mut u64,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0u32;
        loop {
            tries += 1;
            let error = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if error.class() != ErrorClass::Retryable || tries >= policy.max_attempts.max(1) {
                return Err(if error.class() == ErrorClass::Retryable && tries > 1 {
                    error.context(format!("gave up after {tries} attempts"))
                } else {
                    error
                });
            }
            *retries += 1;
            let delay: Duration = policy.backoff.delay(tries, error.retry_after());
            tracing::debug!(
                error = %crate::redact::redact_text(&error.to_string()),
                retry_in_ms = delay.as_millis() as u64,
                "retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// `GET url`, body as bytes.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>> {
        self.call(|| async { Ok(self.get_response(url).await?.body) })
            .await
    }

    /// `GET url`, body as text.
    pub async fn get_text(&self, url: &str) -> Result<String> {
        self.call(|| async { Ok(self.get_response(url).await?.text()) })
            .await
    }

    /// `GET url`, body parsed as JSON into `T`. 404 → `Missing`; 429/5xx/timeouts/cut or
    /// unparsable bodies → `Retryable`; 400/401/403 and a wrong JSON shape → `Permanent`.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T> {
        self.call(|| async { self.get_response(url).await?.json() })
            .await
    }

    /// `GET url`, body as a JSON value. A key repeated in an object keeps its last value (as
    /// in serde_json); under the runtime, each repetition is reported as a warning naming the
    /// model, key and field.
    pub async fn get_json_value(&self, url: &str) -> Result<serde_json::Value> {
        self.call(|| self.get_json_value_once(url)).await
    }

    async fn get_json_value_once(&self, url: &str) -> Result<serde_json::Value> {
        let response = self.get_response(url).await?;
        match crate::json_dups::parse_value(&response.body) {
            Ok((value, duplicates)) => {
                if let Some(notes) = &self.duplicates {
                    notes.add(&response.url, duplicates);
                }
                Ok(value)
            }
            // The error (and its class) of the plain parse.
            Err(_) => response.json(),
        }
    }

    /// `GET url`, body as a [`JsonDoc`](crate::json::JsonDoc): the top-level fields located,
    /// none parsed until the fetcher reads it. The fast way to map a large document: it costs
    /// about what a typed parse of the fields read costs, where [`Context::get_json_value`]
    /// builds (and drops) every field. Errors as [`Context::get_json`]; a body whose top level
    /// is not an object is a permanent error.
    pub async fn get_json_doc(&self, url: &str) -> Result<crate::json::JsonDoc> {
        self.call(|| async {
            let response = self.get_response(url).await?;
            crate::json::JsonDoc::from_response(
                response.body,
                response.url,
                self.duplicates.clone(),
            )
        })
        .await
    }

    /// This context, noting the keys repeated in the JSON bodies it parses into `notes`.
    pub(crate) fn with_duplicate_notes(&self, notes: Arc<DuplicateNotes>) -> Context {
        Context {
            duplicates: Some(notes),
            ..self.clone()
        }
    }
}

/// Builds a [`Context`] from configuration and secrets.
#[derive(Default)]
pub struct ContextBuilder {
    config: Option<Config>,
    secrets: Option<Secrets>,
    auth: Option<AuthTable>,
    http: Option<HttpSettings>,
    sources: Option<Sources>,
}

impl ContextBuilder {
    /// Uses this configuration (default: empty).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Uses these secrets (default: none).
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Uses this authentication table instead of reading `hosts.*.auth` / `fetchers.*.auth`.
    pub fn auth(mut self, auth: AuthTable) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Uses these declared sources (default: the binary's registry's, none without one): their
    /// authentication is sent to their hosts, and their fetchers read their declared values.
    pub fn sources(mut self, sources: Sources) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Overrides the HTTP settings read from the configuration.
    pub fn http_settings(mut self, settings: HttpSettings) -> Self {
        self.http = Some(settings);
        self
    }

    /// Resolves authentication secrets and rate limits; errors name the config key or secret.
    pub fn build(self) -> Result<Context> {
        let config = self.config.unwrap_or_default();
        let secrets = self.secrets.unwrap_or_default();
        let sources = match self.sources {
            Some(s) => s,
            None => crate::registry::registry()
                .map(|r| r.sources().clone())
                .unwrap_or_default(),
        };
        let mut auth = match self.auth {
            Some(a) => a,
            None => AuthTable::from_config(&config, &secrets)?,
        };
        auth.add_sources(&sources, &config, &secrets)?;
        let http = match self.http {
            Some(h) => h,
            None => http_settings_from(&config)?,
        };
        let limiter = limiter_from(&config)?;
        Ok(Context {
            inner: Arc::new(ContextInner {
                http: Http::new(http, auth, Arc::new(limiter)),
                config,
                secrets,
                sources,
            }),
            fetcher: None,
            source: None,
            attempt: 0,
            duplicates: None,
            retries: None,
        })
    }
}

/// HTTP settings from `run.max_body_size`, `run.timeout` (and `fetchers."<name>".timeout`),
/// `http.connect_timeout`, `http.user_agent`, `http.pool_max_idle_per_host`.
pub fn http_settings_from(config: &Config) -> Result<HttpSettings> {
    let mut s = HttpSettings::default();
    if let Some(v) = config.get_size("run.max_body_size")? {
        s.max_body_size = v;
    }
    if let Some(v) = config.get_duration("run.timeout")? {
        s.request_timeout = v;
    }
    if let Some(fetchers) = config.table("fetchers") {
        for name in fetchers.keys() {
            if let Some(v) = config.get_duration(&format!("fetchers.{name}.timeout"))? {
                s.fetcher_timeouts.insert(name.clone(), v);
            }
        }
    }
    if let Some(v) = config.get_duration("http.connect_timeout")? {
        s.connect_timeout = v;
    }
    if let Some(v) = config.get_str("http.user_agent") {
        s.user_agent = v;
    }
    if let Some(v) = config.get_u64("http.pool_max_idle_per_host")? {
        s.pool_max_idle_per_host = v as usize;
    }
    Ok(s)
}

/// Rate limits from `run.rate_limit`/`run.burst` (every host) and `hosts."<host>".rate_limit`/`burst`.
pub fn limiter_from(config: &Config) -> Result<HostLimiter> {
    let rate = |prefix: &str| -> Result<Option<Rate>> {
        let Some(per_second) = config.get_f64(&format!("{prefix}.rate_limit"))? else {
            return Ok(None);
        };
        if per_second <= 0.0 {
            return Ok(None);
        }
        let burst = config
            .get_f64(&format!("{prefix}.burst"))?
            .unwrap_or(per_second.max(1.0));
        Ok(Some(Rate {
            per_second,
            burst: burst.max(1.0),
        }))
    };
    let mut limiter = HostLimiter::new(rate("run")?);
    if let Some(max) = config.get_duration("run.max_retry_after")? {
        limiter.set_max_pause(max);
    } else {
        limiter.set_max_pause(crate::exec::DEFAULT_MAX_RETRY_AFTER);
    }
    let after = config.get_u64("run.unreachable_after")?;
    let pause = config.get_duration("run.unreachable_pause")?;
    if after.is_some() || pause.is_some() {
        let after = match after {
            Some(n) => u32::try_from(n).map_err(|_| {
                crate::Error::permanent(format!(
                    "run.unreachable_after in kye.toml: {n} is too large"
                ))
            })?,
            None => crate::http::rate::DEFAULT_UNREACHABLE_AFTER,
        };
        limiter.set_unreachable(
            after,
            pause.unwrap_or(crate::http::rate::DEFAULT_UNREACHABLE_PAUSE),
        );
    }
    if let Some(hosts) = config.table("hosts") {
        for name in hosts.keys() {
            // Quoted names with dots are found by the longest-prefix lookup.
            if let Some(r) = rate(&format!("hosts.{name}"))? {
                limiter.set_host(name.clone(), r);
            }
        }
    }
    Ok(limiter)
}
