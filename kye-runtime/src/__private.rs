//! Codegen support: the items the code `kye::models!`, `#[kye::get]` and
//! `#[kye::list]` generate names, in one
//! place, re-exported by `kye` as `kye::__private`. Not public API: names here change without
//! notice. (Which step: compile time; the items themselves live with their step in `model/`,
//! `registry.rs` and `request/`.)

pub use inventory;
pub use kye_lang::Schema;
pub use serde;
pub use serde_json;

pub use crate::context::Context;
pub use crate::list::{KeySender, Keys, ListFuture, ListerRegistration};
pub use crate::model::{
    batch_of_one, catch_panics, compile_embedded, deserialize_index_int, failed_call,
    index_position, key_at, kind, run_blocking, BatchFuture, BatchOutput, BatchResult,
    ConstMessage, FetchFuture, FetchOutput, FetchResult, FromKeyValue, HasIndex, IndexAt,
    IndexKinds, Key, KeyError, KeyValue, KindAt, Model,
};
pub use crate::registry::{BatchRegistration, FetcherRegistration, ModelRegistration};
pub use crate::request::Request;
pub use crate::source::{
    BasicUser, ConfigKey, ConfigKind, MemberKind, Probe, SecretKey, SendAs, SourceId, SourceMember,
    SourceRegistration,
};
pub use crate::transform::{TransformContext, TransformInput, TransformerRegistration};
