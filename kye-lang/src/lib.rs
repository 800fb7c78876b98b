//! The kye language: lexer, parser, diagnostics, compiled models and the validator.
//!
//! This crate is pure: no I/O and no async. Give it source text, get a checked
//! [`schema::Schema`] or a list of [`diagnostic::Diagnostic`]s.

#![warn(missing_docs)]

pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod lexer;
pub mod parser;
pub mod schema;
pub mod span;
pub mod validate;

pub use check::{compile, compile_str};
pub use diagnostic::{CompileError, Diagnostic, Label, Severity};
pub use schema::{Cardinality, Edge, Index, Model, Primitive, Schema, Type};
pub use span::{FileId, SourceMap, Span};
pub use validate::{validate_record, BatchValidator, ErrorKind, RecordReport, ValidationError};
