//! kye: a Rust SDK for data sources.
pub use kye_lang as lang;
