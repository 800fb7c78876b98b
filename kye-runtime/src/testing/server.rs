//! [`TestServer`]: the loopback HTTP/1.1 server, its connection loop and its counters.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::http::{self, HeadError, Method, RequestHead};
use super::route::{Chaos, Fault, Generator, Route, Routes};

/// Request and fault counts for one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Requests received for this path (each one counted once its head was read).
    pub requests: u64,
    /// Faults injected, by fault. A request gets at most one fault.
    pub faults: BTreeMap<Fault, u64>,
}

impl PathStats {
    /// Requests that got a fault.
    pub fn faulted(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Requests answered normally, without a fault.
    pub fn clean(&self) -> u64 {
        self.requests - self.faulted()
    }
}

/// A snapshot of what the server has seen, per path.
///
/// Requests that matched a route are counted under the route's path (so `/pokemon/25` and
/// `/pokemon/25/` both count for `/pokemon/25/`); others under the requested path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Counts by path, sorted.
    pub paths: BTreeMap<String, PathStats>,
}

impl Stats {
    /// Total requests over all paths.
    pub fn requests(&self) -> u64 {
        self.paths.values().map(|p| p.requests).sum()
    }

    /// Total faults injected over all paths.
    pub fn faulted(&self) -> u64 {
        self.paths.values().map(PathStats::faulted).sum()
    }

    /// Faults injected over all paths, by fault.
    pub fn faults(&self) -> BTreeMap<Fault, u64> {
        let mut total = BTreeMap::new();
        for (fault, n) in self.paths.values().flat_map(|p| &p.faults) {
            *total.entry(fault.clone()).or_insert(0) += n;
        }
        total
    }

    /// Counts for one path (as counted: see the type's docs).
    pub fn path(&self, path: &str) -> Option<&PathStats> {
        self.paths.get(path)
    }
}

/// State shared by the accept loop, the connections and the [`TestServer`] handle.
struct Shared {
    routes: HashMap<String, Arc<Route>>,
    generators: Vec<Generator>,
    chaos: Option<Chaos>,
    base_url: String,
    stats: Mutex<HashMap<String, PathStats>>,
    connections: AtomicU64,
}

/// What to answer one request with.
struct Decision {
    route: Option<Arc<Route>>,
    fault: Option<Fault>,
}

impl Shared {
    /// The route key a request path counts under.
    fn key(&self, path: &str) -> String {
        if self.routes.contains_key(path) {
            return path.to_owned();
        }
        if !path.ends_with('/') {
            let slashed = format!("{path}/");
            if self.routes.contains_key(&slashed) {
                return slashed;
            }
        }
        path.to_owned()
    }

    fn stats(&self) -> MutexGuard<'_, HashMap<String, PathStats>> {
        // Counters stay meaningful even if a holder panicked: nothing is left half-updated.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A route made on demand by the longest matching generator.
    fn generate(&self, path: &str, query: &str) -> Option<Arc<Route>> {
        self.generators.iter().find_map(|g| {
            let rest = path.strip_prefix(&g.prefix)?;
            let mut route = (g.make)(rest, query)?;
            route.resolve_base(&self.base_url);
            Some(Arc::new(route))
        })
    }

    /// Counts the request and decides its fault.
    fn decide(&self, path: &str, query: &str) -> Decision {
        let key = self.key(path);
        let route = match self.routes.get(&key) {
            Some(route) => Some(Arc::clone(route)),
            None => self.generate(path, query),
        };
        let mut stats = self.stats();
        let entry = stats.entry(key.clone()).or_default();
        let index = entry.requests;
        entry.requests += 1;
        let fault = route
            .as_ref()
            .and_then(|r| r.planned_fault(index))
            .or_else(|| {
                self.chaos
                    .as_ref()
                    .and_then(|c| c.pick(&key, index, entry.faulted()))
            });
        if let Some(f) = &fault {
            *entry.faults.entry(f.clone()).or_insert(0) += 1;
        }
        Decision { route, fault }
    }
}

/// How the server is running: as a task on the caller's runtime, or on its own thread.
enum Running {
    Task(tokio::task::JoinHandle<()>),
    Thread {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Stopped,
}

/// A loopback HTTP/1.1 server with fixed routes and fault injection, for tests.
///
/// Listens on `127.0.0.1` on a free port. `{base}` in route bodies is replaced by
/// [`base_url`](TestServer::base_url), so documents can hold absolute URLs that point back to
/// the server. Supports `GET` and `HEAD` (others get `405`), keep-alive, pipelining, and
/// answers `404` for unknown paths and `400`/`431`/`413`/`501`/`505` for requests it will not
/// serve, without ever panicking. The server stops when the handle is dropped or
/// [`shutdown`](TestServer::shutdown) is awaited; open connections are closed.
///
/// ```
/// use kye_runtime::testing::{Fault, Route, Routes, TestServer};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let server = TestServer::start(
///     Routes::new().route(
///         "/pokemon/25/",
///         Route::json(r#"{"id":25,"species":{"url":"{base}/pokemon-species/25/"}}"#)
///             .fail_first(1, Fault::Status(503)),
///     ),
/// )
/// .await?;
///
/// // Any HTTP client works; a raw socket keeps this example dependency-free.
/// let addr = server.addr();
/// let get = |path: &'static str| async move {
///     let mut s = tokio::net::TcpStream::connect(addr).await?;
///     s.write_all(format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes()).await?;
///     let mut response = String::new();
///     s.read_to_string(&mut response).await?;
///     Ok::<_, std::io::Error>(response)
/// };
/// assert!(get("/pokemon/25/").await?.starts_with("HTTP/1.1 503"));
/// let ok = get("/pokemon/25/").await?;
/// assert!(ok.starts_with("HTTP/1.1 200"));
/// assert!(ok.contains(&format!("{}/pokemon-species/25/", server.base_url())));
///
/// assert_eq!(server.requests("/pokemon/25/"), 2);
/// assert_eq!(server.stats().faulted(), 1);
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct TestServer {
    addr: SocketAddr,
    base_url: String,
    shared: Arc<Shared>,
    running: Running,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base_url", &self.base_url)
            .field("routes", &self.shared.routes.len())
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Binds `127.0.0.1:0` and serves `routes` on the current tokio runtime.
    ///
    /// The server runs as a task of the calling runtime: with a current-thread runtime, talk
    /// to it with async clients only (a blocking client would starve it). For blocking
    /// clients or child processes use [`TestServer::start_on_thread`].
    ///
    /// # Panics
    /// Panics if called outside a tokio runtime, like `tokio::spawn`.
    pub async fn start(routes: Routes) -> io::Result<TestServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let (addr, base_url, shared) = prepare(&listener, routes)?;
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(TestServer {
            addr,
            base_url,
            shared,
            running: Running::Task(task),
        })
    }

    /// Like [`TestServer::start`], but runs the server on a thread of its own with its own
    /// single-threaded runtime, so it can be used from synchronous code and blocking clients.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use kye_runtime::testing::{Route, Routes, TestServer};
    ///
    /// let server = TestServer::start_on_thread(Routes::new().route("/a/", Route::json("[]")))?;
    /// let mut s = std::net::TcpStream::connect(server.addr())?;
    /// s.write_all(b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n")?;
    /// let mut response = String::new();
    /// s.read_to_string(&mut response)?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK\r\n"));
    /// assert!(response.ends_with("\r\n\r\n[]"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_on_thread(routes: Routes) -> io::Result<TestServer> {
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let (addr, base_url, shared) = prepare(&listener, routes)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("kye-test-server-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let server = tokio::spawn(accept_loop(listener, task_shared));
                    // Either the handle sends, or it is dropped: both mean stop.
                    let _ = stopped.await;
                    server.abort();
                    let _ = server.await;
                });
                // Dropping the runtime cancels the connection tasks and closes their sockets.
                drop(runtime);
            })?;
        Ok(TestServer {
            addr,
            base_url,
            shared,
            running: Running::Thread {
                stop: Some(stop),
                thread: Some(thread),
            },
        })
    }

    /// The server's address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash: what `{base}` is replaced with.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The absolute URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}/{path}", self.base_url)
        }
    }

    /// Requests received for `path` so far (resolved like a request: `/a` counts as `/a/` if
    /// only `/a/` is a route).
    pub fn requests(&self, path: &str) -> u64 {
        let key = self.shared.key(path);
        self.shared.stats().get(&key).map_or(0, |p| p.requests)
    }

    /// Faults injected for `path` so far, by fault.
    pub fn faults(&self, path: &str) -> BTreeMap<Fault, u64> {
        let key = self.shared.key(path);
        self.shared
            .stats()
            .get(&key)
            .map(|p| p.faults.clone())
            .unwrap_or_default()
    }

    /// A snapshot of all counters.
    pub fn stats(&self) -> Stats {
        let stats = self.shared.stats();
        Stats {
            paths: stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// TCP connections accepted so far. With keep-alive, a pooling client such as reqwest
    /// makes far fewer connections than requests; faults that close the connection
    /// ([`Fault::CloseMidBody`], malformed requests) force new ones.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Resets all request and fault counters (not [`connections`](TestServer::connections)).
    /// Fault plans (`fail_first`, sequences) and the chaos mix start over too, since they are
    /// indexed by the per-path request count.
    pub fn reset_stats(&self) {
        self.shared.stats().clear();
    }

    /// Stops accepting, closes all connections and waits until the port is released.
    pub async fn shutdown(mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Task(task) => {
                task.abort();
                let _ = task.await;
            }
            Running::Thread { stop, thread } => {
                drop(stop);
                if let Some(thread) = thread {
                    // Joining is quick (the runtime only has to drop its tasks), but it blocks:
                    // do it off the async worker.
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
            Running::Stopped => {}
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::Task(task) => task.abort(),
            Running::Thread { stop, thread } => {
                drop(stop);
                if let Some(thread) = thread {
                    let _ = thread.join();
                }
            }
            Running::Stopped => {}
        }
    }
}

/// Resolves `{base}` in all routes and builds the shared state.
fn prepare(
    listener: &TcpListener,
    routes: Routes,
) -> io::Result<(SocketAddr, String, Arc<Shared>)> {
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let Routes {
        routes,
        generators,
        chaos,
    } = routes;
    let routes = routes
        .into_iter()
        .map(|(path, mut route)| {
            route.resolve_base(&base_url);
            (path, Arc::new(route))
        })
        .collect();
    let shared = Arc::new(Shared {
        routes,
        generators,
        chaos,
        base_url: base_url.clone(),
        stats: Mutex::new(HashMap::new()),
        connections: AtomicU64::new(0),
    });
    Ok((addr, base_url, shared))
}

/// Accepts connections until the task is aborted; aborting drops the [`JoinSet`], which
/// aborts every connection task.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                connections.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
        // Reap finished connections so the set does not grow with the number served.
        while connections.try_join_next().is_some() {}
    }
}

/// Serves requests on one connection until either side closes it.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut scratch = [0u8; 8192];
    loop {
        // Read one request head, bounded by MAX_HEAD.
        let head_len = loop {
            if let Some(n) = http::head_len(&buf) {
                break n;
            }
            if buf.len() >= http::MAX_HEAD {
                let _ = write_error(&mut stream, 431).await;
                return;
            }
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&scratch[..n]),
            }
        };
        if head_len > http::MAX_HEAD {
            let _ = write_error(&mut stream, 431).await;
            return;
        }
        let head = match http::parse_head(&buf[..head_len]) {
            Ok(head) => head,
            Err(e) => {
                let status = match e {
                    HeadError::Malformed => 400,
                    HeadError::Version => 505,
                    HeadError::TransferEncoding => 501,
                };
                let _ = write_error(&mut stream, status).await;
                return;
            }
        };
        buf.drain(..head_len);

        // Discard the request body, if any.
        if head.content_length > http::MAX_REQUEST_BODY {
            let _ = write_error(&mut stream, 413).await;
            return;
        }
        // Bounded by MAX_REQUEST_BODY above, so it fits in usize.
        let mut body_left = usize::try_from(head.content_length).unwrap_or(usize::MAX);
        let from_buf = body_left.min(buf.len());
        buf.drain(..from_buf);
        body_left -= from_buf;
        while body_left > 0 {
            let want = body_left.min(scratch.len());
            match stream.read(&mut scratch[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body_left -= n,
            }
        }

        match respond(&mut stream, &shared, &head).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// Writes a short error response and asks the client to close.
async fn write_error(stream: &mut TcpStream, status: u16) -> io::Result<()> {
    let body = http::reason(status).as_bytes();
    let mut out = response_head(
        status,
        &[],
        body.len() as u64,
        true,
        Some("text/plain; charset=utf-8"),
    );
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    linger_close(stream).await;
    Ok(())
}

/// Closes our side, then reads and discards what the client still sends (bounded in bytes and
/// time) before dropping the socket. Closing with unread input makes the kernel send a reset,
/// which can destroy the error response before the client reads it.
async fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut scratch = [0u8; 8192];
    let mut budget: usize = 1024 * 1024;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while budget > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => break,
        }
    }
}

/// Headers the server manages itself; route headers with these names are ignored.
fn is_managed_header(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|m| name.eq_ignore_ascii_case(m))
}

/// Status line and headers, ending with the blank line.
fn response_head(
    status: u16,
    headers: &[(String, String)],
    content_length: u64,
    close: bool,
    default_content_type: Option<&str>,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", http::reason(status));
    let has_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if let (false, Some(ct)) = (has_type, default_content_type) {
        out.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (name, value) in headers.iter().filter(|(n, _)| !is_managed_header(n)) {
        // A value with a line break would split the header block: drop such headers.
        if value.contains(['\r', '\n']) || name.contains(['\r', '\n', ':']) {
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {content_length}\r\n"));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The normal response for a path: its route, or 404.
fn normal_response(route: Option<&Route>) -> (u16, Vec<(String, String)>, &[u8]) {
    match route {
        Some(r) => (r.status, r.headers.clone(), &r.body),
        None => (
            404,
            vec![(
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            )],
            b"Not Found",
        ),
    }
}

const NOT_JSON_BODY: &[u8] =
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n\
<body><h1>Bad Gateway</h1><p>The upstream server returned an invalid response.</p></body></html>\n";

/// Answers one request; returns whether the connection may be reused.
async fn respond(stream: &mut TcpStream, shared: &Shared, head: &RequestHead) -> io::Result<bool> {
    if head.method == Method::Other {
        let body = http::reason(405).as_bytes();
        let headers = [("Allow".to_owned(), "GET, HEAD".to_owned())];
        let mut out = response_head(
            405,
            &headers,
            body.len() as u64,
            !head.keep_alive,
            Some("text/plain; charset=utf-8"),
        );
        out.extend_from_slice(body);
        stream.write_all(&out).await?;
        return Ok(head.keep_alive);
    }
    let send_body = head.method == Method::Get;
    let keep = head.keep_alive;
    let Decision { route, fault } = shared.decide(&head.path, &head.query);
    let text = Some("text/plain; charset=utf-8");
    if let Some(required) = route.as_deref().and_then(|r| r.authorization.as_deref()) {
        if head.authorization.as_deref() != Some(required) {
            let body = http::reason(401).as_bytes();
            let headers = [("WWW-Authenticate".to_owned(), "Bearer".to_owned())];
            write_full(stream, 401, &headers, body, keep, send_body, text).await?;
            return Ok(keep);
        }
    }

    match fault {
        None => {
            let (status, headers, body) = normal_response(route.as_deref());
            write_full(stream, status, &headers, body, keep, send_body, None).await?;
            Ok(keep)
        }
        Some(Fault::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            let (status, headers, body) = normal_response(route.as_deref());
            write_full(stream, status, &headers, body, keep, send_body, None).await?;
            Ok(keep)
        }
        Some(Fault::Status(status)) => {
            write_full(
                stream,
                status,
                &[],
                http::reason(status).as_bytes(),
                keep,
                send_body,
                text,
            )
            .await?;
            Ok(keep)
        }
        Some(Fault::RateLimited { retry_after_secs }) => {
            let headers = [("Retry-After".to_owned(), retry_after_secs.to_string())];
            write_full(
                stream,
                429,
                &headers,
                http::reason(429).as_bytes(),
                keep,
                send_body,
                text,
            )
            .await?;
            Ok(keep)
        }
        Some(Fault::CloseMidBody) => {
            let (status, headers, body) = normal_response(route.as_deref());
            let sent = &body[..body.len() / 2];
            // Always announce more than is sent, even for an empty body.
            let announced = (body.len() as u64).max(sent.len() as u64 + 1);
            let mut out = response_head(status, &headers, announced, false, None);
            if send_body {
                out.extend_from_slice(sent);
            }
            stream.write_all(&out).await?;
            stream.flush().await?;
            Ok(false)
        }
        Some(Fault::TruncatedJson) => {
            let (status, headers, body) = normal_response(route.as_deref());
            write_full(
                stream,
                status,
                &headers,
                truncated(body),
                keep,
                send_body,
                None,
            )
            .await?;
            Ok(keep)
        }
        Some(Fault::NotJson) => {
            let headers = [(
                "Content-Type".to_owned(),
                "text/html; charset=utf-8".to_owned(),
            )];
            write_full(stream, 200, &headers, NOT_JSON_BODY, keep, send_body, None).await?;
            Ok(keep)
        }
        Some(Fault::HugeBody { bytes }) => {
            let headers = [("Content-Type".to_owned(), "application/json".to_owned())];
            stream
                .write_all(&response_head(200, &headers, bytes, !keep, None))
                .await?;
            if send_body {
                write_huge_body(stream, bytes).await?;
            }
            Ok(keep)
        }
    }
}

/// The first half of `body`, cut so that a JSON document (even one followed by whitespace)
/// is never complete: at most half of its trimmed length.
fn truncated(body: &[u8]) -> &[u8] {
    let trimmed = body.trim_ascii_end();
    &body[..trimmed.len() / 2]
}

async fn write_full(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep: bool,
    send_body: bool,
    default_content_type: Option<&str>,
) -> io::Result<()> {
    let mut out = response_head(
        status,
        headers,
        body.len() as u64,
        !keep,
        default_content_type,
    );
    if send_body {
        if body.len() <= 64 * 1024 {
            out.extend_from_slice(body);
        } else {
            stream.write_all(&out).await?;
            out.clear();
            stream.write_all(body).await?;
        }
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    Ok(())
}

/// Streams `{"padding":"xxx…"}` of exactly `bytes` bytes from a fixed buffer.
async fn write_huge_body(stream: &mut TcpStream, bytes: u64) -> io::Result<()> {
    const OPEN: &[u8] = b"{\"padding\":\"";
    const CLOSE: &[u8] = b"\"}";
    static PAD: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let frame = (OPEN.len() + CLOSE.len()) as u64;
    let mut fill = if bytes >= frame {
        stream.write_all(OPEN).await?;
        bytes - frame
    } else {
        bytes
    };
    while fill > 0 {
        let n = fill.min(PAD.len() as u64) as usize;
        stream.write_all(&PAD[..n]).await?;
        fill -= n as u64;
    }
    if bytes >= frame {
        stream.write_all(CLOSE).await?;
    }
    Ok(())
}
