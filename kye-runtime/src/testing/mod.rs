//! A loopback HTTP/1.1 server for tests, offline demos and fault injection.
//!
//! Tests of fetchers must never touch a public host. [`TestServer`] listens on `127.0.0.1`
//! on a free port and serves fixed [`Routes`]; `{base}` in bodies becomes the server's own
//! base URL, so documents can link to each other with absolute URLs as real APIs do.
//!
//! It misbehaves on demand, per route or for a seeded share of all requests ([`Chaos`]):
//! error statuses, `429` with `Retry-After`, stalls, connections closed mid-body, truncated
//! JSON, HTML instead of JSON, huge bodies, and "fail the first N requests, then succeed".
//! [`Stats`] counts requests and injected [`Fault`]s per path, so a test can check that every
//! outcome is accounted for.
//!
//! [`Fixtures`] turns a directory of JSON files into routes (`pokemon/25.json` is served at
//! `/pokemon/25/` and, through its `name`, at `/pokemon/pikachu/`); [`Routes::generate`]
//! makes documents on request, for load tests of as many keys as they need.
//!
//! The server is hand-written over tokio's `TcpListener` (no hyper): GET and HEAD, keep-alive
//! and pipelining, `Content-Length` framing, bounded request heads (16 KiB) and bodies
//! (1 MiB, read and discarded). It is a test tool: it trusts nothing it reads and never
//! panics on malformed requests, but it is not meant to face the internet.
//!
//! ```
//! use std::time::Duration;
//! use kye_runtime::testing::{Chaos, Fault, Route, Routes, TestServer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let routes: Routes = (1..=100)
//!     .map(|id| (format!("/pokemon/{id}/"), Route::json(format!(r#"{{"id":{id}}}"#))))
//!     .collect();
//! // 20% of requests fail with 500 or stall, reproducibly (seed 7), at most twice per path.
//! let routes = routes.chaos(
//!     Chaos::new(7, 0.2)
//!         .fault(Fault::Status(500), 3)
//!         .fault(Fault::Stall(Duration::from_secs(2)), 1)
//!         .max_faults_per_path(2),
//! );
//! let server = TestServer::start(routes).await?;
//! let url = server.url("/pokemon/1/");
//! assert!(url.starts_with("http://127.0.0.1:"));
//! // ... run the fetcher against server.base_url(), then:
//! let stats = server.stats();
//! assert_eq!(stats.requests(), stats.faulted() + stats.paths.values().map(|p| p.clean()).sum::<u64>());
//! # Ok(())
//! # }
//! ```

mod fixtures;
mod http;
mod route;
mod server;

pub use fixtures::{FixtureError, Fixtures};
pub use route::{query_param, Chaos, Fault, Route, Routes, BASE_PLACEHOLDER};
pub use server::{PathStats, Stats, TestServer};

// Registrations for hand-written fetchers in tests.
mod registration;
pub use registration::FetcherBuilder;
