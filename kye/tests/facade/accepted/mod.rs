//! Every accepted form of `#[kye::get]` and `kye::models!` compiles, registers, and calls
//! (these were trybuild pass cases, each a cargo build of its own; here they compile once).
//! One module each, with its own models and fetchers; each test reads the registry of its
//! own module ([`crate::registry_of`]).

mod batch_forms;
mod composite_params;
mod composite_tuple;
mod crate_override;
mod ctx_alias;
mod destructured_tuple;
mod duplicate_fetchers;
mod explicit_async_ctx;
mod inferred_sync_no_ctx;
mod json_output;
mod option_output;
mod shadowed_prelude;
mod string_key_types;
