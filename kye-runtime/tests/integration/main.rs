//! kye-runtime's end-to-end tests through its public API, one binary (issue 12: each test
//! binary is a separate link of the whole dependency tree). `cargo test -p kye-runtime --test
//! integration` runs them; a module name as filter runs a part (`... integration runtime_resume`).
//!
//! - `runtime_*`: the runtime from request to stored row: pipeline, resume and skip, secrets in
//!   logs and bodies, scale;
//! - `reliability_*`: hostile servers, kills, concurrent writers, giving up, hostile input;
//! - `http_context`: `Context`'s HTTP helpers against a real server;
//! - `testing_*`: the loopback test server itself (raw TCP, reqwest, fixtures);
//! - `server_*`: `kye serve` over HTTP (access, read-through, hostile input, secrets).
//!
//! Tests that kill a fetch mid-run start this binary again as a child running one
//! `#[ignore = "child process helper"]` test (`common::spawn_self`, `common::test_name`).
//! The store contract (every store, same cases) and store-specific tests are the
//! `store_contract` and `store_specific` binaries.

mod common;

mod http_context;
mod queue;
mod reliability_concurrent;
mod reliability_faults;
mod reliability_give_up;
mod reliability_hostile;
mod reliability_kill;
mod runtime_batch;
mod runtime_body_secrets;
mod runtime_pipeline;
mod runtime_resume;
mod runtime_scale;
mod runtime_secrets;
mod server_api;
mod server_catalog;
mod server_secrets;
mod server_shape;
mod testing_fixtures;
mod testing_reqwest;
mod testing_server;
