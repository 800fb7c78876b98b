//! The kye runtime. Use it through the `kye` facade crate.
//!
//! Cargo features: `cli` (default) builds the command line ([`cli`]) and the data readers it
//! uses ([`data`]); `testing` builds the loopback test server ([`testing`]). A crate of fetchers
//! needs neither.

#![warn(missing_docs)]

pub mod auth;
#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod context;
#[cfg(feature = "cli")]
pub mod data;
pub mod duration;
pub mod error;
pub mod exec;
pub mod http;
pub mod json;
pub mod json_dups;
pub mod listing;
pub mod model;
pub mod output;
mod pages;
pub mod redact;
pub mod registry;
pub mod request;
pub mod runtime;
pub mod secrets;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::Config;
pub use context::Context;
pub use error::{Error, ErrorClass, Result};
pub use listing::Listing;
pub use model::{Key, KeyValue, Model};
pub use pages::Pages;
pub use registry::{registry, Registry};
pub use request::{Request, RequestError};
pub use runtime::{FetchRequest, FetchSummary, GetResult, Runtime, RuntimeBuilder};
pub use secrets::Secret;
