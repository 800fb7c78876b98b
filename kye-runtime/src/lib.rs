//! The kye runtime. Use it through the `kye` facade crate.

#![warn(missing_docs)]

pub mod context;
pub mod error;
pub mod testing;

pub use context::Context;
pub use error::{Error, ErrorClass, Result};
