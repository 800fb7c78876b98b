//! The kye runtime. Use it through the `kye` facade crate, which re-exports everything public
//! here.
//!
//! The public API, small on purpose (the modules are private; what a user needs is re-exported
//! here, as axum does):
//!
//! * at the root: the runtime ([`Runtime`], [`RuntimeBuilder`], [`FetchRequest`],
//!   [`FetchSummary`], [`GetResult`], [`Progress`], [`KeyProblem`], [`Shutdown`]), what a
//!   fetcher gets ([`Context`], [`Config`], [`Secret`], [`Secrets`], [`Auth`], [`AuthTable`],
//!   [`Pages`]),
//!   errors ([`Error`], [`ErrorClass`], [`Result`]), the registry and requests ([`registry()`],
//!   [`Registry`], [`Request`], [`ResolvedRequest`], [`KeySet`], ...), keys and models
//!   ([`Key`], [`KeyValue`], [`Model`]), the listing ([`Listing`], [`Format`]), and the run
//!   outcomes a summary names ([`RunId`], [`RunStatus`], [`RunCounts`], [`KeyStatus`]);
//! * modules that are a namespace of their own: [`store`] (opening and reading a store,
//!   writing one through [`store::StoreWrite`]), [`http`] (the shared client's types),
//!   [`json`] ([`json::JsonDoc`], duplicate keys), and behind features `cli` (default: the
//!   command line, [`cli`]) and `testing` (the loopback test server, `testing`);
//! * one hidden module, `__private`: the support items that only the code `kye::models!` and
//!   `#[kye::get]` generate names. Not public API; names there change without notice.
//!
//! Every type a public signature names is nameable from this root (`unnameable_types` is
//! denied below), and `kye` re-exports the root whole, so every such type is reachable from
//! `kye`; `kye/tests/facade/public_api.rs` names each one through `kye::` paths.
//!
//! Cargo features: `cli` (default) builds the command line ([`cli`]) and the data readers it
//! uses; `testing` builds the loopback test server (`testing`); `server` builds `kye serve`
//! (`Server`, `ServeOptions`, `MasterKey`, and the server's tables in the store). A crate of
//! fetchers needs none of them.

#![warn(missing_docs)]
#![deny(unnameable_types)]

mod auth;
#[cfg(feature = "cli")]
pub mod cli;
mod config;
mod context;
#[cfg(feature = "cli")]
mod data;
mod duration;
mod error;
mod exec;
pub mod http;
pub mod json;
mod json_dups;
mod list;
mod listing;
mod model;
mod output;
mod pages;
#[cfg(feature = "postgres")]
mod queue;
mod redact;
mod registry;
mod request;
mod runtime;
mod secrets;
#[cfg(feature = "server")]
mod server;
mod source;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod transform;

#[doc(hidden)]
pub mod __private;

#[cfg(all(test, feature = "testing"))]
mod tests;

pub use auth::{Auth, AuthTable};
pub use config::Config;
pub use context::{Context, ContextBuilder};
pub use error::{Error, ErrorClass, Result};
pub use exec::Shutdown;
pub use list::{IntoKeyValue, KeySender, Keys, ListFuture, Listed, ListerRegistration};
pub use listing::{
    EdgeListing, FetcherListing, ListerListing, Listing, ModelListing, TransformerListing,
};
pub use model::{BatchFuture, CallFuture, FetchFuture, Key, KeyError, KeyValue, Model, OutputKind};
pub use output::Format;
pub use pages::Pages;
#[cfg(feature = "postgres")]
pub use queue::{
    BatchEnd, ClaimedBatch, Queue, QueueProgress, WorkerLease, WorkerOptions, WorkerReport,
    BATCH_ATTEMPTS, BATCH_KEYS,
};
pub use registry::{
    registry, BatchRegistration, FetcherRegistration, ModelRegistration, RegisteredModel, Registry,
    RegistryError, RegistryWarning,
};
pub use request::{
    KeyIter, KeySet, KeySpec, Request, RequestError, RequestErrorKind, ResolvedRequest,
};
pub use runtime::{
    FetchRequest, FetchSummary, GetResult, KeyProblem, Progress, Runtime, RuntimeBuilder,
    TransformCounts, TransformSummary, DEFAULT_STORE, SUMMARY_EXAMPLES,
};
pub use secrets::{Secret, Secrets};
#[cfg(feature = "server")]
pub use server::{MasterKey, SealError, ServeOptions, Server, MASTER_KEY_ENV};
pub use source::{
    BasicUser, CheckOutcome, ConfigKey, ConfigKind, ConfigListing, ConfigStatus, MemberKind, Probe,
    SecretKey, SecretListing, SecretStatus, SendAs, SourceCheck, SourceEnv, SourceError, SourceId,
    SourceListing, SourceMember, SourceRegistration, Sources, SourcesListing, SourcesReport,
    RESERVED_SOURCE_NAMES,
};
pub use store::{KeyStatus, RunCounts, RunId, RunStatus};
pub use transform::{TransformContext, TransformInput, TransformerRegistration};
