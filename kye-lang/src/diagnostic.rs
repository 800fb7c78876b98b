//! Schema diagnostics: errors and warnings with a span, rendered miette-style
//! (`file:line:col`, the source line and a caret under the span, then a hint).

use crate::span::Span;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The schema cannot be used.
    Error,
    /// The schema is usable but probably not what was meant.
    Warning,
}

/// A span with a short message, shown under the source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// What the label points at.
    pub span: Span,
    /// Text shown next to the caret (may be empty).
    pub message: String,
}

/// One problem found in a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable machine-readable code, e.g. `kye::unknown-type`.
    pub code: &'static str,
    /// One-line description of the problem.
    pub message: String,
    /// The main location.
    pub primary: Label,
    /// Other related locations (e.g. the first definition of a duplicate).
    pub secondary: Vec<Label>,
    /// A suggestion, e.g. `did you mean 'Number'?`.
    pub hint: Option<String>,
}
