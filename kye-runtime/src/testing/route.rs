//! What the test server answers: [`Route`]s by path, [`Fault`]s to inject, and [`Chaos`], a
//! seeded share of faults over all requests.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The placeholder replaced by the server's base URL (e.g. `http://127.0.0.1:40123`) in route
/// bodies and header values when the server starts.
pub const BASE_PLACEHOLDER: &str = "{base}";

/// A misbehaviour the server can inject instead of (or before) the normal response.
///
/// Faults are plain values: they compare, hash and order, so [`Stats`](super::Stats) can count
/// them per path, and a test can check that outcomes add up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status code and a short `text/plain` body (the reason phrase),
    /// e.g. 500, 503, 404, 400 or 401. The connection stays usable. Use a three-digit code
    /// whose responses carry a body (not 1xx, 204 or 304).
    Status(u16),
    /// Answer `429 Too Many Requests` with `Retry-After: <retry_after_secs>`.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
    },
    /// Wait this long, then answer normally. Use a duration longer than the client's timeout
    /// to test timeouts; a client that gives up simply closes the connection.
    Stall(Duration),
    /// Send the status line, headers with the full `Content-Length`, and only the first half
    /// of the body, then close the connection.
    CloseMidBody,
    /// Send the first half of the body with a `Content-Length` that matches what is sent:
    /// framing is correct, the JSON is not.
    TruncatedJson,
    /// Answer `200 OK` with an HTML error page (`text/html`), as a proxy or captive portal would.
    NotJson,
    /// Answer `200 OK` with a valid JSON document of exactly `bytes` bytes
    /// (`{"padding":"xxxx…"}`), streamed from a small buffer without allocating it.
    HugeBody {
        /// Total body size in bytes, announced in `Content-Length`.
        bytes: u64,
    },
}

impl Fault {
    /// A short machine-friendly name of the fault's kind: `status`, `rate_limited`, `stall`,
    /// `close_mid_body`, `truncated_json`, `not_json` or `huge_body`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Status(_) => "status",
            Fault::RateLimited { .. } => "rate_limited",
            Fault::Stall(_) => "stall",
            Fault::CloseMidBody => "close_mid_body",
            Fault::TruncatedJson => "truncated_json",
            Fault::NotJson => "not_json",
            Fault::HugeBody { .. } => "huge_body",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status(code) => write!(f, "status {code}"),
            Fault::RateLimited { retry_after_secs } => {
                write!(f, "429 with Retry-After: {retry_after_secs}")
            }
            Fault::Stall(d) => write!(f, "stall for {d:?}"),
            Fault::CloseMidBody => f.write_str("connection closed mid-body"),
            Fault::TruncatedJson => f.write_str("truncated JSON"),
            Fault::NotJson => f.write_str("non-JSON body"),
            Fault::HugeBody { bytes } => write!(f, "huge body of {bytes} bytes"),
        }
    }
}

/// A fixed response for one path, optionally with faults planned for it.
///
/// ```
/// use kye_runtime::testing::{Fault, Route};
///
/// // Answers 503 twice, then the document.
/// let route = Route::json(r#"{"id": 25, "url": "{base}/pokemon/25/"}"#)
///     .fail_first(2, Fault::Status(503));
/// assert_eq!(route.status(), 200);
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Fault for the n-th request to this route (0-based); `None` entries succeed.
    pub(crate) sequence: Vec<Option<Fault>>,
    /// Fault for every request after the sequence.
    pub(crate) always: Option<Fault>,
    /// The `Authorization` header a request must carry; others get 401.
    pub(crate) authorization: Option<String>,
}

impl Route {
    /// A response with this status and body and no headers besides the ones the server
    /// always sends (`Content-Length`, and `Connection: close` when it closes).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Route {
        Route {
            status,
            headers: Vec::new(),
            body: body.into(),
            sequence: Vec::new(),
            always: None,
            authorization: None,
        }
    }

    /// Answers only requests whose `Authorization` header is exactly `value` (`Bearer tok`);
    /// any other gets `401 Unauthorized` (and counts as a request). For testing a source's
    /// declared authentication end to end.
    pub fn require_authorization(mut self, value: impl Into<String>) -> Route {
        self.authorization = Some(value.into());
        self
    }

    /// `200 OK` with `Content-Type: application/json` and this body. The body is not checked:
    /// use it to serve broken JSON too.
    pub fn json(body: impl Into<Vec<u8>>) -> Route {
        Route::new(200, body).header("Content-Type", "application/json")
    }

    /// This status with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Route {
        Route::new(status, body).header("Content-Type", "text/plain; charset=utf-8")
    }

    /// Adds a header, replacing any header of the same name (case-insensitive).
    /// `Content-Length`, `Transfer-Encoding` and `Connection` are managed by the server and
    /// ignored here.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Route {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Injects `fault` into every request to this route (after any planned sequence).
    pub fn always(mut self, fault: Fault) -> Route {
        self.always = Some(fault);
        self
    }

    /// Injects `fault` into the first `n` requests to this route; later requests succeed.
    pub fn fail_first(self, n: usize, fault: Fault) -> Route {
        self.fault_sequence(std::iter::repeat_n(Some(fault), n))
    }

    /// Plans one entry per request, in order: `Some(fault)` injects it, `None` answers
    /// normally. Requests after the plan answer normally (or get [`Route::always`]).
    ///
    /// ```
    /// use kye_runtime::testing::{Fault, Route};
    ///
    /// // 429, then OK, then a truncated body, then OK forever.
    /// let route = Route::json("{}").fault_sequence([
    ///     Some(Fault::RateLimited { retry_after_secs: 1 }),
    ///     None,
    ///     Some(Fault::TruncatedJson),
    /// ]);
    /// # let _ = route;
    /// ```
    pub fn fault_sequence(mut self, plan: impl IntoIterator<Item = Option<Fault>>) -> Route {
        self.sequence = plan.into_iter().collect();
        self
    }

    /// The status of the normal response.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body of the normal response, before `{base}` is replaced.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The headers of the normal response.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The planned fault for the `index`-th request (0-based) to this route.
    pub(crate) fn planned_fault(&self, index: u64) -> Option<Fault> {
        let planned = usize::try_from(index)
            .ok()
            .and_then(|i| self.sequence.get(i).cloned());
        match planned {
            Some(entry) => entry,
            None => self.always.clone(),
        }
    }

    /// Replaces `{base}` in the body and header values.
    pub(crate) fn resolve_base(&mut self, base: &str) {
        self.body = replace_bytes(&self.body, BASE_PLACEHOLDER.as_bytes(), base.as_bytes());
        for (_, value) in &mut self.headers {
            *value = value.replace(BASE_PLACEHOLDER, base);
        }
    }
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(i) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Normalizes a route path: always starts with `/`, no query string.
pub(crate) fn normalize_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// The table of routes a [`TestServer`](super::TestServer) serves, plus optional [`Chaos`].
///
/// Paths are matched exactly, ignoring the query string. A request for `/a/b` that has no
/// route falls back to `/a/b/` (PokeAPI's canonical URLs end in `/`). Unknown paths get `404`.
///
/// ```
/// use kye_runtime::testing::{Route, Routes};
///
/// let routes = Routes::new()
///     .route("/pokemon/25/", Route::json(r#"{"id": 25, "name": "pikachu"}"#))
///     .route("/health", Route::text(200, "ok"));
/// assert_eq!(routes.len(), 2);
/// assert!(routes.get("/pokemon/25/").is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub(crate) routes: BTreeMap<String, Route>,
    pub(crate) generators: Vec<Generator>,
    pub(crate) chaos: Option<Chaos>,
}

/// Builds the route for the part of a path after a prefix, on demand.
/// Makes a route from the rest of the path and the query string.
pub(crate) type GenerateFn = dyn Fn(&str, &str) -> Option<Route> + Send + Sync;

/// A prefix whose routes are made per request (see [`Routes::generate`]).
#[derive(Clone)]
pub(crate) struct Generator {
    pub(crate) prefix: String,
    pub(crate) make: std::sync::Arc<GenerateFn>,
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// No routes: every request gets `404`.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Adds (or replaces) the route for `path`. A missing leading `/` is added and any query
    /// string is dropped.
    pub fn route(mut self, path: impl AsRef<str>, route: Route) -> Routes {
        self.insert(path, route);
        self
    }

    /// Adds (or replaces) the route for `path`, returning the one it replaced.
    pub fn insert(&mut self, path: impl AsRef<str>, route: Route) -> Option<Route> {
        self.routes.insert(normalize_path(path.as_ref()), route)
    }

    /// The route for exactly this path.
    pub fn get(&self, path: &str) -> Option<&Route> {
        self.routes.get(path)
    }

    /// The route for exactly this path, to change it (e.g. add faults to one fixture).
    ///
    /// ```
    /// use kye_runtime::testing::{Fault, Route, Routes};
    ///
    /// let mut routes = Routes::new().route("/a/", Route::json("{}"));
    /// if let Some(r) = routes.get_mut("/a/") {
    ///     *r = r.clone().always(Fault::Status(500));
    /// }
    /// ```
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Route> {
        self.routes.get_mut(path)
    }

    /// Serves every path under `prefix` that has no fixed route with a route made on demand
    /// from the rest of the path (e.g. `"25/"` for `/pokemon/25/` under `/pokemon/`); `None`
    /// means 404. Nothing is stored per path, so a server can stand in for an API with a
    /// million documents. `{base}` is replaced in what `make` returns, and the route's own
    /// fault plan applies (indexed by the requests to that exact path). The longest matching
    /// prefix wins. A panic in `make` closes that one connection.
    ///
    /// ```
    /// use kye_runtime::testing::{Route, Routes};
    ///
    /// let routes = Routes::new().generate("/pokemon/", |rest| {
    ///     let id: u32 = rest.trim_end_matches('/').parse().ok()?;
    ///     (1..=100_000).contains(&id).then(|| {
    ///         Route::json(format!(r#"{{"id": {id}, "self": "{{base}}/pokemon/{id}/"}}"#))
    ///     })
    /// });
    /// # let _ = routes;
    /// ```
    pub fn generate<F>(self, prefix: impl AsRef<str>, make: F) -> Routes
    where
        F: Fn(&str) -> Option<Route> + Send + Sync + 'static,
    {
        self.generate_with_query(prefix, move |rest, _query| make(rest))
    }

    /// As [`Routes::generate`], with the request's query string (without `?`, empty when
    /// there is none) for routes that answer by it: a list endpoint that pages by `offset`
    /// and `limit`, say. The stats count the requests by path, whatever their query.
    ///
    /// ```
    /// use kye_runtime::testing::{Route, Routes};
    ///
    /// let routes = Routes::new().generate_with_query("/items", |_rest, query| {
    ///     let page: u32 = query.strip_prefix("page=")?.parse().ok()?;
    ///     Some(Route::json(format!(r#"{{"page": {page}, "items": []}}"#)))
    /// });
    /// # let _ = routes;
    /// ```
    pub fn generate_with_query<F>(mut self, prefix: impl AsRef<str>, make: F) -> Routes
    where
        F: Fn(&str, &str) -> Option<Route> + Send + Sync + 'static,
    {
        self.generators.push(Generator {
            prefix: normalize_path(prefix.as_ref()),
            make: std::sync::Arc::new(make),
        });
        // Longest prefix first.
        self.generators
            .sort_by_key(|g| std::cmp::Reverse(g.prefix.len()));
        self
    }

    /// Injects a seeded share of faults into all requests (after each route's own plan).
    pub fn chaos(mut self, chaos: Chaos) -> Routes {
        self.chaos = Some(chaos);
        self
    }

    /// All route paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl<P: AsRef<str>> FromIterator<(P, Route)> for Routes {
    fn from_iter<I: IntoIterator<Item = (P, Route)>>(iter: I) -> Routes {
        let mut routes = Routes::new();
        routes.extend(iter);
        routes
    }
}

impl<P: AsRef<str>> Extend<(P, Route)> for Routes {
    fn extend<I: IntoIterator<Item = (P, Route)>>(&mut self, iter: I) {
        for (path, route) in iter {
            self.insert(path, route);
        }
    }
}

/// A reproducible share of faults over all requests.
///
/// Whether the `n`-th request to a path gets a fault, and which, depends only on the seed,
/// the path and `n`, not on the order in which concurrent requests arrive: the same seed gives
/// the same faults per path on every run. Chaos applies to every `GET`/`HEAD` request,
/// including those for unknown paths, after the route's own plan (a request gets at most one
/// fault). A fault counts when it is decided, even if the client gives up before the answer
/// (a stall past its timeout).
///
/// ```
/// use std::time::Duration;
/// use kye_runtime::testing::{Chaos, Fault};
///
/// // 20% of requests fail: half of them with 500, half with 429.
/// let chaos = Chaos::new(42, 0.2)
///     .fault(Fault::Status(500), 1)
///     .fault(Fault::RateLimited { retry_after_secs: 1 }, 1);
///
/// // Or every kind of fault with equal weight, at most 3 faults per path so a retrying
/// // client always gets through eventually.
/// let chaos = Chaos::mixed(7, 0.2, Duration::from_secs(5), 8 << 20).max_faults_per_path(3);
/// # let _ = chaos;
/// ```
#[derive(Debug, Clone)]
pub struct Chaos {
    seed: u64,
    rate: f64,
    faults: Vec<(Fault, u32)>,
    max_per_path: Option<u64>,
}

impl Chaos {
    /// Faults hit a share `rate` (0.0..=1.0) of requests; add the faults to pick from with
    /// [`Chaos::fault`]. Without faults, nothing is injected.
    pub fn new(seed: u64, rate: f64) -> Chaos {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        Chaos {
            seed,
            rate,
            faults: Vec::new(),
            max_per_path: None,
        }
    }

    /// Every kind of fault with equal weight: 500, 503, 429 (`Retry-After: 1`), a stall of
    /// `stall`, a close mid-body, truncated JSON, a non-JSON body and a `huge_bytes` body.
    pub fn mixed(seed: u64, rate: f64, stall: Duration, huge_bytes: u64) -> Chaos {
        Chaos::new(seed, rate)
            .fault(Fault::Status(500), 1)
            .fault(Fault::Status(503), 1)
            .fault(
                Fault::RateLimited {
                    retry_after_secs: 1,
                },
                1,
            )
            .fault(Fault::Stall(stall), 1)
            .fault(Fault::CloseMidBody, 1)
            .fault(Fault::TruncatedJson, 1)
            .fault(Fault::NotJson, 1)
            .fault(Fault::HugeBody { bytes: huge_bytes }, 1)
    }

    /// Adds a fault to pick from, with a relative weight (0 never picks it).
    pub fn fault(mut self, fault: Fault, weight: u32) -> Chaos {
        self.faults.push((fault, weight));
        self
    }

    /// Injects at most `n` faults per path (counting the route's own planned faults), so a
    /// client that retries enough always gets the document in the end.
    pub fn max_faults_per_path(mut self, n: u64) -> Chaos {
        self.max_per_path = Some(n);
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The share of requests that get a fault.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The fault for the `index`-th request to `path` (0-based), given how many faults that
    /// path already got.
    pub(crate) fn pick(&self, path: &str, index: u64, faults_so_far: u64) -> Option<Fault> {
        if self.max_per_path.is_some_and(|max| faults_so_far >= max) {
            return None;
        }
        let total: u64 = self.faults.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 || self.rate == 0.0 {
            return None;
        }
        let mut rng = fastrand::Rng::with_seed(mix(self.seed ^ mix(fnv1a(path) ^ mix(index))));
        if rng.f64() >= self.rate {
            return None;
        }
        let mut ticket = rng.u64(0..total);
        for (fault, weight) in &self.faults {
            let weight = u64::from(*weight);
            if ticket < weight {
                return Some(fault.clone());
            }
            ticket -= weight;
        }
        None
    }
}

/// FNV-1a: a stable hash of the path (std's hashers may change between releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64 finalizer: spreads nearby inputs (index 0, 1, 2…) over the whole range.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value of parameter `name` in a query string (`offset=20&limit=10`), as sent (not
/// percent-decoded): what a route made by [`Routes::generate_with_query`] reads.
///
/// ```
/// use kye_runtime::testing::query_param;
///
/// assert_eq!(query_param("offset=20&limit=10", "limit"), Some("10"));
/// assert_eq!(query_param("offset=20", "limit"), None);
/// ```
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_placeholder_is_replaced_in_body_and_headers() {
        let mut r = Route::json("{\"url\": \"{base}/a/\", \"b\": \"{base}\"}")
            .header("Location", "{base}/x");
        r.resolve_base("http://127.0.0.1:9");
        assert_eq!(
            r.body(),
            b"{\"url\": \"http://127.0.0.1:9/a/\", \"b\": \"http://127.0.0.1:9\"}"
        );
        assert_eq!(r.headers()[1].1, "http://127.0.0.1:9/x");
    }

    #[test]
    fn header_replaces_same_name() {
        let r = Route::json("{}").header("content-type", "text/plain");
        assert_eq!(
            r.headers(),
            &[("content-type".to_owned(), "text/plain".to_owned())]
        );
    }

    #[test]
    fn planned_faults_follow_the_sequence_then_always() {
        let r = Route::json("{}").fail_first(2, Fault::Status(503));
        assert_eq!(r.planned_fault(0), Some(Fault::Status(503)));
        assert_eq!(r.planned_fault(1), Some(Fault::Status(503)));
        assert_eq!(r.planned_fault(2), None);
        let r = Route::json("{}")
            .fault_sequence([None, Some(Fault::NotJson)])
            .always(Fault::Status(500));
        assert_eq!(r.planned_fault(0), None);
        assert_eq!(r.planned_fault(1), Some(Fault::NotJson));
        assert_eq!(r.planned_fault(2), Some(Fault::Status(500)));
        assert_eq!(r.planned_fault(u64::MAX), Some(Fault::Status(500)));
    }

    #[test]
    fn chaos_is_reproducible_and_close_to_its_rate() {
        let chaos = Chaos::mixed(42, 0.2, Duration::from_secs(1), 1024);
        let run = |c: &Chaos| -> Vec<Option<Fault>> {
            (0..5000)
                .map(|i| c.pick(&format!("/pokemon/{}/", i % 500), i / 500, 0))
                .collect()
        };
        let a = run(&chaos);
        assert_eq!(a, run(&chaos.clone()));
        let hits = a.iter().flatten().count();
        assert!((800..1200).contains(&hits), "{hits} faults in 5000 at 20%");
        // Every kind shows up.
        for (fault, _) in &chaos.faults {
            assert!(
                a.iter().flatten().any(|f| f == fault),
                "{fault} never picked"
            );
        }
        // Another seed gives another mix.
        assert_ne!(a, run(&Chaos::mixed(43, 0.2, Duration::from_secs(1), 1024)));
    }

    #[test]
    fn chaos_limits_and_degenerate_settings() {
        let chaos = Chaos::new(1, 1.0)
            .fault(Fault::Status(500), 1)
            .max_faults_per_path(2);
        assert_eq!(chaos.pick("/a", 0, 0), Some(Fault::Status(500)));
        assert_eq!(chaos.pick("/a", 2, 2), None);
        assert_eq!(Chaos::new(1, 1.0).pick("/a", 0, 0), None);
        assert_eq!(Chaos::new(1, f64::NAN).rate(), 0.0);
        assert_eq!(Chaos::new(1, 7.0).rate(), 1.0);
        let zero = Chaos::new(1, 1.0).fault(Fault::Status(500), 0);
        assert_eq!(zero.pick("/a", 0, 0), None);
    }

    #[test]
    fn paths_are_normalized() {
        let routes = Routes::new().route("a/b?x=1", Route::json("{}"));
        assert_eq!(routes.paths().collect::<Vec<_>>(), ["/a/b"]);
    }
}
