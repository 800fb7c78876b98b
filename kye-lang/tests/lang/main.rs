//! kye-lang's tests, one binary (issue 12: each test binary is a separate link): parsing,
//! diagnostics, validation, property tests of the parser, and conformance with the original
//! implementation (`../shared/conformance`).
//!
//! `cargo test -p kye-lang` runs them; `cargo test -p kye-lang --test lang conformance` a part.

mod conformance;
mod diagnostics;
mod parse;
mod proptests;
mod validate;
