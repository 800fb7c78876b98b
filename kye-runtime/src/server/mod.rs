//! `kye serve`: the company's data environment over HTTP (feature `server`).
//!
//! The server holds the sources' credentials (sealed secrets, opened at start with the master
//! key) and the warehouse; a caller presents an API token, its role (kye.toml `[roles.NAME]`)
//! says which models it may read, have fetched, backfill, and whether it may read the audit
//! log. Records are read through the store: a fresh stored record is answered from it, else
//! (for a caller allowed to fetch) the registered fetcher fetches it through the [`Runtime`]
//! like any other key, and concurrent identical requests share one upstream fetch.
//!
//! One role a file: `mod.rs` (the router, its state, limits and shutdown), `auth.rs` (tokens,
//! roles), `seal.rs` (sealed secrets), `cache.rs` (sharing fetches), `limit.rs` (rate
//! limits), `api.rs` (the handlers), `records.rs` (the read-through
//! handler), `audit.rs` (the audit middleware) and `openapi.rs` (the
//! OpenAPI document, checked against the routes by a test), and `catalog/` (the web pages at
//! `/`, docs/catalog.md). `docs/serving.md` is the guide.

mod api;
pub(crate) mod audit;
pub(crate) mod auth;
mod cache;
mod catalog;
mod fresh;
mod limit;
mod listen;
mod openapi;
mod records;
pub(crate) mod seal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::store::{ServerStore, StoreRead};

pub use seal::{MasterKey, SealError, MASTER_KEY_ENV};

/// How a server listens and what it allows. Defaults: 600 requests a minute per token, a
/// 120 s request timeout, 64 KiB request bodies, 8 KiB request targets (path and query),
/// 30 refused sign-ins a minute per client address, 1,024 connections at once, 32
/// read-through fetches at once, a source's "no such key" answering reads for 10 minutes,
/// 15 s to send a request's headers (also the idle time of a
/// kept-alive connection), 30 s to finish in-flight requests at shutdown, a look for stale
/// records every 60 s, audit rows kept 365 days. `[serve]` in kye.toml sets them
/// (`rate_limit`, `failed_auth_limit`, `request_timeout`, `max_body`, `max_connections`,
/// `max_fetches`, `missing_ttl`, `header_timeout`, `grace_period`, `refresh_every`, `audit_retention`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    listen: SocketAddr,
    rate_limit: u32,
    failed_auth_limit: u32,
    request_timeout: Duration,
    max_body: usize,
    max_target: usize,
    max_connections: usize,
    max_fetches: usize,
    missing_ttl: Duration,
    header_timeout: Duration,
    grace_period: Duration,
    refresh_every: Duration,
    audit_retention: Option<Duration>,
}

impl ServeOptions {
    /// Listening on `listen` (`127.0.0.1:0` picks a free port), with the defaults.
    pub fn new(listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            listen,
            rate_limit: 600,
            failed_auth_limit: 30,
            request_timeout: Duration::from_secs(120),
            max_body: 64 * 1024,
            max_target: 8 * 1024,
            max_connections: 1024,
            max_fetches: 32,
            missing_ttl: Duration::from_secs(600),
            header_timeout: Duration::from_secs(15),
            grace_period: Duration::from_secs(30),
            refresh_every: Duration::from_secs(60),
            audit_retention: Some(Duration::from_secs(365 * 86_400)),
        }
    }

    /// Requests per minute per token.
    pub fn rate_limit(mut self, per_minute: u32) -> ServeOptions {
        self.rate_limit = per_minute.max(1);
        self
    }

    /// Refused sign-ins (unknown, malformed, revoked or expired tokens) per minute per client
    /// address (default 30); past it, that address's requests get 429 before any token is
    /// looked at, until the minute's budget refills. Behind a reverse proxy every client has
    /// the proxy's address: limit per client there.
    pub fn failed_auth_limit(mut self, per_minute: u32) -> ServeOptions {
        self.failed_auth_limit = per_minute.max(1);
        self
    }

    /// The longest a request may take (a read-through fetch included): then 408.
    pub fn request_timeout(mut self, timeout: Duration) -> ServeOptions {
        self.request_timeout = timeout;
        self
    }

    /// The largest request body accepted: larger is 413.
    pub fn max_body(mut self, bytes: usize) -> ServeOptions {
        self.max_body = bytes;
        self
    }

    /// Connections served at once (default 1,024); at the cap the server stops accepting
    /// until one closes, so new clients wait in the kernel's backlog.
    pub fn max_connections(mut self, n: usize) -> ServeOptions {
        self.max_connections = n.max(1);
        self
    }

    /// Read-through fetches (reads of keys not stored or too old) running at once, over
    /// every caller (default 32). A read that finds them all busy waits up to 5 s for one,
    /// then gets 503 with `Retry-After`; reads the store answers never wait.
    pub fn max_fetches(mut self, n: usize) -> ServeOptions {
        self.max_fetches = n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// How long the source's "no such key" answers the reads that give no `max_age` (default
    /// 10 minutes): within it such a read is 404 from the store, past it the source is asked
    /// again. A read with `max_age` uses that instead.
    pub fn missing_ttl(mut self, ttl: Duration) -> ServeOptions {
        self.missing_ttl = ttl;
        self
    }

    /// The longest a client may take to send a request's headers (default 15 s), counted
    /// from when the connection waits for a request: a kept-alive connection idle that long
    /// is closed, and so is one that trickles its headers.
    pub fn header_timeout(mut self, timeout: Duration) -> ServeOptions {
        self.header_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long in-flight requests get to finish after a stop was asked for.
    pub fn grace_period(mut self, grace: Duration) -> ServeOptions {
        self.grace_period = grace;
        self
    }

    /// How often the background refresher looks for records older than their model's
    /// `[freshness]` (default 60 s).
    pub fn refresh_every(mut self, every: Duration) -> ServeOptions {
        self.refresh_every = every.max(Duration::from_millis(10));
        self
    }

    /// How long audit rows are kept (default 365 days; `None` keeps them all). Older rows are
    /// deleted when the server starts and every hour.
    pub fn audit_retention(mut self, keep: Option<Duration>) -> ServeOptions {
        self.audit_retention = keep;
        self
    }

    /// These options with `[serve]` of the configuration applied over them.
    pub fn with_config(mut self, config: &crate::Config) -> Result<ServeOptions> {
        if let Some(n) = config.get_u64("serve.rate_limit")? {
            self.rate_limit = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        if let Some(n) = config.get_u64("serve.failed_auth_limit")? {
            self = self.failed_auth_limit(u32::try_from(n).unwrap_or(u32::MAX));
        }
        if let Some(d) = config.get_duration("serve.request_timeout")? {
            self.request_timeout = d;
        }
        if let Some(n) = config.get_size("serve.max_body")? {
            self.max_body = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = config.get_u64("serve.max_connections")? {
            self = self.max_connections(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(n) = config.get_u64("serve.max_fetches")? {
            self = self.max_fetches(usize::try_from(n).unwrap_or(usize::MAX));
        }
        if let Some(d) = config.get_duration("serve.missing_ttl")? {
            self.missing_ttl = d;
        }
        if let Some(d) = config.get_duration("serve.header_timeout")? {
            self = self.header_timeout(d);
        }
        if let Some(d) = config.get_duration("serve.grace_period")? {
            self.grace_period = d;
        }
        // `audit_retention = false` keeps every row.
        if config.get("serve.audit_retention") == Some(&toml::Value::Boolean(false)) {
            self.audit_retention = None;
        } else if let Some(d) = config.get_duration("serve.audit_retention")? {
            self.audit_retention = Some(d);
        }
        if let Some(d) = config.get_duration("serve.refresh_every")? {
            self = self.refresh_every(d);
        }
        Ok(self)
    }
}

/// Read handles a server keeps on its store.
const READERS: usize = 4;

/// Connections for token lookups.
const TOKEN_STORES: usize = 2;

/// What every handler shares.
pub(crate) struct AppState {
    pub runtime: Runtime,
    /// Token lookups and the audit log's reads (the audit writer has a connection of its own).
    pub store: Arc<Mutex<Box<dyn ServerStore>>>,
    /// Connections of their own for the token lookup every request makes, used in turn (two
    /// requests on two threads do not wait for one connection).
    pub token_stores: Vec<Mutex<Box<dyn ServerStore>>>,
    pub next_token_store: std::sync::atomic::AtomicUsize,
    /// The audit log's queue; taken (closed) when the server stops.
    pub audit: Mutex<Option<audit::Sink>>,
    /// Read handles of the runtime's store, used in turn (a record read takes one).
    pub readers: Vec<Mutex<Box<dyn StoreRead>>>,
    pub next_reader: std::sync::atomic::AtomicUsize,
    pub roles: auth::Roles,
    pub cache: cache::Coalescer,
    /// Slots of read-through fetches (`max_fetches`).
    pub fetch_slots: Arc<tokio::sync::Semaphore>,
    pub memo: cache::Memo,
    pub limiter: limit::RateLimiter,
    /// Refused sign-ins per client address.
    pub failed_auth: limit::RateLimiter,
    pub options: ServeOptions,
    /// Backfills started through the API, stopped (resumable) at shutdown.
    pub backfills: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// `[freshness]` of kye.toml.
    pub freshness: Vec<fresh::Policy>,
    /// When the background refresher looks next.
    pub next_refresh: Mutex<Option<crate::store::Timestamp>>,
    /// Set when the server stops; the refresher ends.
    pub stopping: std::sync::atomic::AtomicBool,
    pub stop_notify: tokio::sync::Notify,
    /// The store is a local SQLite file: its calls run on the request's own task.
    pub local: bool,
    /// The PostgreSQL store's work queue, when the server was given it
    /// ([`Server::watch_queue`]): `GET /v1/runs/{id}` then shows a queued run's batches and
    /// workers.
    #[cfg(feature = "postgres")]
    pub queue: std::sync::OnceLock<Arc<crate::Queue>>,
}

impl AppState {
    /// Runs `f` with the server's store: right here on SQLite (an indexed read of a local
    /// file takes microseconds, less than a hop to a blocking thread), on a blocking thread
    /// for a server store across the network.
    pub(crate) async fn with_store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn ServerStore) -> std::result::Result<T, crate::store::StoreError>
            + Send
            + 'static,
    ) -> std::result::Result<T, crate::store::StoreError> {
        let state = self.clone();
        self.on_store_thread("server store", move || {
            let mut store = state.store.lock().unwrap_or_else(|p| p.into_inner());
            f(store.as_mut())
        })
        .await
    }

    /// Runs `run` right here on SQLite, on a blocking thread for a store across the network;
    /// `what` names the store in the error of a task that failed.
    async fn on_store_thread<T: Send + 'static>(
        &self,
        what: &str,
        run: impl FnOnce() -> std::result::Result<T, crate::store::StoreError> + Send + 'static,
    ) -> std::result::Result<T, crate::store::StoreError> {
        if self.local {
            return run();
        }
        tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
            Err(crate::store::StoreError::Corrupt {
                path: what.into(),
                message: format!("a store task failed: {e}"),
            })
        })
    }

    /// Looks up the token whose SHA-256 is `hash` on one of the token connections (here or on
    /// a blocking thread, as [`AppState::with_store`]).
    pub(crate) async fn token_by_hash(
        self: &Arc<Self>,
        hash: String,
    ) -> std::result::Result<Option<crate::store::TokenRecord>, crate::store::StoreError> {
        let state = self.clone();
        self.on_store_thread("server store", move || {
            let mut store = take_one(&state.token_stores, &state.next_token_store);
            store.token_by_hash(&hash)
        })
        .await
    }

    /// A slot of the server's read-through fetches (`[serve] max_fetches`), shared by every
    /// caller; `None` when none came free within [`cache::FETCH_WAIT`].
    pub(crate) async fn fetch_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slot = self.fetch_slots.clone().acquire_owned();
        tokio::time::timeout(cache::FETCH_WAIT, slot)
            .await
            .ok()?
            .ok()
    }

    /// The audit log's sink, while the server runs.
    pub(crate) fn audit_sink(&self) -> Option<audit::Sink> {
        self.audit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `f` with one of the store's read handles (here or on a blocking thread, as
    /// [`AppState::with_store`]).
    pub(crate) async fn with_reader<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&dyn StoreRead) -> std::result::Result<T, crate::store::StoreError>
            + Send
            + 'static,
    ) -> std::result::Result<T, crate::store::StoreError> {
        let state = self.clone();
        self.on_store_thread("store reader", move || {
            let reader = take_one(&state.readers, &state.next_reader);
            f(reader.as_ref())
        })
        .await
    }
}

/// One of `pool`'s handles: the first free one from a rotating start (`next`), else that
/// start's, waited for.
fn take_one<'a, T: ?Sized>(
    pool: &'a [Mutex<Box<T>>],
    next: &std::sync::atomic::AtomicUsize,
) -> std::sync::MutexGuard<'a, Box<T>> {
    let n = pool.len();
    let start = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let free = (0..n).find_map(|i| pool[(start + i) % n].try_lock().ok());
    match free {
        Some(h) => h,
        None => pool[start % n].lock().unwrap_or_else(|p| p.into_inner()),
    }
}

/// A bound `kye serve` server: [`Server::bind`], then [`Server::run_until`].
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    audit_writer: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listening socket. The roles come from the runtime's configuration
    /// (`[roles.NAME]`); `store` holds the tokens and the audit log (see
    /// [`open_server_store`](crate::store::open_server_store)).
    pub async fn bind(
        runtime: Runtime,
        store: Box<dyn ServerStore>,
        options: ServeOptions,
    ) -> Result<Server> {
        let roles = auth::Roles::from_config(runtime.context().settings())?.with_sources(
            runtime.registry().sources(),
            &auth::providers(runtime.registry()),
        )?;
        let freshness = fresh::policies(runtime.context().settings())?;
        for p in &freshness {
            if runtime.registry().model(&p.model).is_none() {
                return Err(Error::permanent(format!(
                    "kye.toml: [freshness] {}: no such model in this binary",
                    p.model
                )));
            }
        }
        let readers = (0..READERS)
            .map(|_| runtime.with_store(|s| s.reader()).map(Mutex::new))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::other)?;
        let local = runtime.with_store(|s| s.kind() == "sqlite");
        let writer_store = store.another().map_err(Error::other)?;
        let token_stores = (0..TOKEN_STORES)
            .map(|_| store.another().map(Mutex::new))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::other)?;
        let store = Arc::new(Mutex::new(store));
        let (sink, writer) = audit::Sink::new(Arc::new(Mutex::new(writer_store)));
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::permanent(format!("cannot listen on {}: {e}", options.listen)))?;
        let state = Arc::new(AppState {
            runtime,
            store: store.clone(),
            token_stores,
            next_token_store: std::sync::atomic::AtomicUsize::new(0),
            audit: Mutex::new(Some(sink)),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            roles,
            cache: cache::Coalescer::default(),
            fetch_slots: Arc::new(tokio::sync::Semaphore::new(options.max_fetches)),
            memo: cache::Memo::default(),
            limiter: limit::RateLimiter::new(options.rate_limit),
            failed_auth: limit::RateLimiter::new(options.failed_auth_limit),
            options,
            backfills: Mutex::new(Vec::new()),
            freshness,
            next_refresh: Mutex::new(None),
            stopping: std::sync::atomic::AtomicBool::new(false),
            stop_notify: tokio::sync::Notify::new(),
            local,
            #[cfg(feature = "postgres")]
            queue: std::sync::OnceLock::new(),
        });
        Ok(Server {
            state,
            listener,
            audit_writer: Some(tokio::spawn(writer)),
        })
    }

    /// Creates a token called `name` for `role` (a `[roles.NAME]` the servers' kye.toml
    /// defines; not checked here), expiring at `expires` if given, and returns the token text:
    /// the only time it exists outside the caller, since the store keeps its SHA-256 only.
    /// `kye token create` calls this.
    pub fn issue_token(
        store: &mut dyn ServerStore,
        name: &str,
        role: &str,
        expires: Option<crate::store::Timestamp>,
    ) -> Result<String> {
        let token = auth::new_token()?;
        store
            .create_token(&crate::store::TokenRecord {
                name: name.to_string(),
                role: role.to_string(),
                hash: auth::hash_token(&token),
                created: crate::store::Timestamp::now(),
                expires,
                revoked: None,
            })
            .map_err(Error::other)?;
        Ok(token)
    }

    /// Opens every secret sealed in `store` with `key` and adds it to `secrets` (a secret of
    /// the same name set in the environment still wins, as for the secrets file). Returns how
    /// many were opened. No sealed secrets: nothing to open, and no key is needed. A wrong key
    /// is an error naming both keys' ids. `kye serve` calls this before building its runtime.
    pub fn open_sealed_secrets(
        store: &mut dyn ServerStore,
        key: Option<&MasterKey>,
        secrets: &mut crate::Secrets,
    ) -> Result<usize> {
        let sealed = store.secrets().map_err(Error::other)?;
        if sealed.is_empty() {
            return Ok(0);
        }
        let key = key.ok_or_else(|| Error::other(SealError::NoKey))?;
        for s in &sealed {
            let value = key.open(s).map_err(Error::other)?;
            // Registered with the redactor, as every secret kye holds.
            let _ = crate::Secret::new(value.clone());
            secrets.insert(s.name.clone(), value);
        }
        Ok(sealed.len())
    }

    /// Shows the progress of runs queued in `queue` (the work queue of the same PostgreSQL
    /// store) in `GET /v1/runs/{id}`: batches, workers, their rates and lease expiries.
    /// `kye serve` calls this on a PostgreSQL store.
    #[cfg(feature = "postgres")]
    pub fn watch_queue(&self, queue: crate::Queue) {
        let _ = self.state.queue.set(Arc::new(queue));
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::permanent(format!("no local address: {e}")))
    }

    /// Serves until `stop` completes, then stops taking connections, gives in-flight requests
    /// the grace period and stops running backfills (they are left resumable: the next run
    /// of the same request resumes them).
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let state = self.state.clone();
        let app = router(state.clone());
        let addr = self.local_addr()?;
        let audit_writer = self.audit_writer;
        tracing::info!(%addr, "kye serve listening");
        let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
        let stopper = tokio::spawn(async move {
            stop.await;
            let _ = stopped_tx.send(true);
        });
        let refresher = tokio::spawn(fresh::refresher(state.clone(), state.options.refresh_every));
        let pruner = state
            .options
            .audit_retention
            .map(|keep| tokio::spawn(audit::pruner(state.clone(), keep)));
        let grace = state.options.grace_period;
        let limits = listen::Limits {
            max_connections: state.options.max_connections,
            header_timeout: state.options.header_timeout,
        };
        listen::serve(self.listener, app, limits, stopped_rx, grace).await;
        stopper.abort();
        if let Some(p) = pruner {
            p.abort();
        }
        // Backfills stop as on Ctrl-C: in-flight keys finish within the runtime's grace
        // period, the run is recorded interrupted and resumes with the next run of it.
        state
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        state.stop_notify.notify_one();
        state.runtime.shutdown().trigger();
        let mut handles: Vec<_> =
            std::mem::take(&mut *state.backfills.lock().unwrap_or_else(|p| p.into_inner()));
        handles.push(refresher);
        for h in handles {
            let _ = tokio::time::timeout(grace, h).await;
        }
        // The audit rows still queued are written before the server returns.
        drop(state.audit.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(w) = audit_writer {
            let _ = tokio::time::timeout(grace, w).await;
        }
        tracing::info!("kye serve stopped");
        Ok(())
    }
}

/// The routes, each with the handler in `api.rs` (`openapi::ROUTES` lists the same paths),
/// and the catalog's pages.
fn router(state: Arc<AppState>) -> Router {
    let timeout = state.options.request_timeout;
    let max_body = state.options.max_body;
    Router::new()
        .route("/health", get(api::health))
        .route("/openapi.json", get(api::openapi))
        .route("/v1/models", get(api::models))
        .route("/v1/models/{model}/records", get(records::records))
        .route("/v1/runs", get(api::runs).post(api::start_run))
        .route("/v1/runs/{id}", get(api::run))
        .route("/v1/rejects", get(api::rejects))
        .route("/v1/drift", get(api::drift))
        .route("/v1/registry", get(api::registry))
        .route("/v1/audit", get(api::audit))
        .route("/v1/freshness", get(api::freshness))
        .merge(catalog::routes())
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::no_method)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::middleware,
        ))
        .with_state(state)
}
