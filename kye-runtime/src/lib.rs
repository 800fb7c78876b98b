//! The kye runtime. Use it through the `kye` facade crate.

#![warn(missing_docs)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod context;
pub mod data;
pub mod error;
pub mod exec;
pub mod http;
pub mod json;
pub mod json_dups;
pub mod listing;
pub mod model;
pub mod registry;
pub mod request;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod testing;

pub use config::Config;
pub use context::Context;
pub use error::{Error, ErrorClass, Result};
pub use listing::Listing;
pub use model::{Key, KeyValue, Model};
pub use registry::{registry, Registry};
pub use request::{Request, RequestError};
pub use runtime::{FetchRequest, FetchSummary, GetResult, Runtime, RuntimeBuilder};
pub use secrets::Secret;
