//! What validation reports: [`ErrorKind`], [`ValidationError`], [`RecordReport`], [`BatchReport`].

use std::fmt;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::schema::Schema;
use crate::span::Span;

/// Longest offending value quoted in an error, in characters; longer values are cut with `…`.
pub const MAX_VALUE_CHARS: usize = 80;

/// Longest JSON text of [`ValidationError::example`] kept as the value itself.
pub const MAX_EXAMPLE_CHARS: usize = 1000;

/// Unknown fields listed per record (as warnings, hence drift rows); the rest are counted in
/// one more warning ("N more fields ...") without a path or example.
pub const MAX_UNKNOWN_FIELDS: usize = 100;

/// The kinds of validation problems. Serialized as the variant name (`"InvalidType"`).
///
/// The first seven are the kinds of the original Python implementation and keep their meaning;
/// the others are kye's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ErrorKind {
    /// A value is not of the edge's type (or does not satisfy the type's constraint: a constant,
    /// an enum, a regular expression).
    InvalidType,
    /// A row or record lacks a value for an edge of one of the model's indexes.
    MissingIndex,
    /// A required edge (`name: T` or `name+: T`) has no value.
    MissingValue,
    /// A single-valued edge has two or more different values in one record.
    MultipleValues,
    /// One value of a (sub-)index belongs to rows with different full index values.
    NonUniqueSubIndex,
    /// A value of one index equals the value of another index of the same arity in a different
    /// record, so a lookup by that value would be ambiguous.
    IndexConflict,
    /// An `assert` of the model is false.
    AssertionFailed,
    /// A field that is not an edge of the model (a warning: the field is dropped, never lost
    /// silently).
    UnknownEdge,
    /// The model named for validation, or a nested reference, does not exist in the schema.
    UnknownModel,
    /// A required edge has no column at all in a batch (a warning: the batch provides only part
    /// of the model, as in the original, where absent columns are not checked).
    MissingColumn,
    /// A row, or the whole data file, could not be read (not JSON, not UTF-8, ...).
    Unreadable,
}

impl ErrorKind {
    /// The name used in reports, e.g. `"InvalidType"`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidType => "InvalidType",
            ErrorKind::MissingIndex => "MissingIndex",
            ErrorKind::MissingValue => "MissingValue",
            ErrorKind::MultipleValues => "MultipleValues",
            ErrorKind::NonUniqueSubIndex => "NonUniqueSubIndex",
            ErrorKind::IndexConflict => "IndexConflict",
            ErrorKind::AssertionFailed => "AssertionFailed",
            ErrorKind::UnknownEdge => "UnknownEdge",
            ErrorKind::UnknownModel => "UnknownModel",
            ErrorKind::MissingColumn => "MissingColumn",
            ErrorKind::Unreadable => "Unreadable",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One validation problem.
///
/// Serializes to `{"kind", "model", "edges", "rows", "key", "path", "value", "expected",
/// "message", "location", "span"}`; optional fields are left out when empty.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The model the rule belongs to (for nested records: the nested model).
    pub model: String,
    /// The edge(s) involved, by edge name.
    pub edges: Vec<String>,
    /// 0-based positions of the input rows involved (batch validation); empty for one record.
    pub rows: Vec<usize>,
    /// The record's index value, e.g. `id=3`, when known.
    pub key: Option<String>,
    /// Where in a nested record, e.g. `types[1].name`.
    pub path: Option<String>,
    /// The offending value as text, cut to [`MAX_VALUE_CHARS`].
    pub value: Option<String>,
    /// For an unknown field ([`ErrorKind::UnknownEdge`]): its value as it came, JSON type
    /// kept (`"985112003456789"` stays a string); a value whose JSON text is longer than
    /// [`MAX_EXAMPLE_CHARS`] is that text cut, as a string. Not serialized (see `value`).
    pub example: Option<serde_json::Value>,
    /// The expected type or the rule, e.g. `Number` or `age >= 0`.
    pub expected: Option<String>,
    /// A sentence for people.
    pub message: String,
    /// `file:line:col` of the schema rule, when known.
    pub location: Option<String>,
    /// Span of the schema rule (edge, index or assertion) the error comes from.
    pub span: Option<Span>,
}

impl ValidationError {
    /// A new error with only kind, model and message set.
    pub fn new(kind: ErrorKind, model: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            kind,
            model: model.into(),
            edges: Vec::new(),
            rows: Vec::new(),
            key: None,
            path: None,
            value: None,
            example: None,
            expected: None,
            message: message.into(),
            location: None,
            span: None,
        }
    }

    /// Sets the schema span and its `file:line:col`.
    pub fn at(mut self, schema: &Schema, span: Span) -> Self {
        self.location = Some(schema.location(span));
        self.span = Some(span);
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ValidationError {}

impl Serialize for ValidationError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ValidationError", 11)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("model", &self.model)?;
        st.serialize_field("edges", &self.edges)?;
        st.serialize_field("rows", &self.rows)?;
        if let Some(k) = &self.key {
            st.serialize_field("key", k)?;
        }
        if let Some(p) = &self.path {
            st.serialize_field("path", p)?;
        }
        if let Some(v) = &self.value {
            st.serialize_field("value", v)?;
        }
        if let Some(e) = &self.expected {
            st.serialize_field("expected", e)?;
        }
        st.serialize_field("message", &self.message)?;
        if let Some(l) = &self.location {
            st.serialize_field("location", l)?;
        }
        if let Some(sp) = &self.span {
            st.serialize_field(
                "span",
                &SpanJson {
                    file: sp.file.0,
                    start: sp.start,
                    end: sp.end,
                },
            )?;
        }
        st.end()
    }
}

#[derive(Serialize)]
struct SpanJson {
    file: u32,
    start: u32,
    end: u32,
}

/// The result of validating one record with [`crate::validate::validate_record`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordReport {
    /// The normalized record: numbers coerced per type (`"25"` → `25` for a `Number`), unknown
    /// fields removed, titles renamed to edge names, nested records normalized.
    pub value: serde_json::Value,
    /// Problems that make the record invalid.
    pub errors: Vec<ValidationError>,
    /// Problems that do not (e.g. [`ErrorKind::UnknownEdge`]).
    pub warnings: Vec<ValidationError>,
}

impl RecordReport {
    /// True when there are no errors (warnings are allowed).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The result of a batch validation ([`crate::validate::BatchValidator::finish`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    /// True when there are no errors.
    pub valid: bool,
    /// Problems that make the batch invalid, in the order they were found.
    pub errors: Vec<ValidationError>,
    /// Problems that do not.
    pub warnings: Vec<ValidationError>,
    /// Number of rows pushed.
    pub rows: usize,
    /// Number of distinct records (distinct full index values) among rows with a complete index.
    pub records: usize,
}

impl BatchReport {
    /// True when there are no errors (warnings are allowed).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Cuts a value's text to [`MAX_VALUE_CHARS`] characters.
pub(crate) fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_VALUE_CHARS) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

/// An unknown field's value as [`ValidationError::example`] keeps it.
pub(crate) fn example_of(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            let text = v.to_string();
            match text.char_indices().nth(MAX_EXAMPLE_CHARS) {
                None => v.clone(),
                Some((i, _)) => serde_json::Value::String(format!("{}…", &text[..i])),
            }
        }
        serde_json::Value::String(s) => match s.char_indices().nth(MAX_EXAMPLE_CHARS) {
            None => v.clone(),
            Some((i, _)) => serde_json::Value::String(format!("{}…", &s[..i])),
        },
        _ => v.clone(),
    }
}

/// A JSON value as short text for messages: strings without quotes, the rest as JSON.
pub(crate) fn show_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => cut(s),
        other => cut(&other.to_string()),
    }
}

/// `rows 1, 2, 3` / `row 4` with at most 10 listed.
pub(crate) fn show_rows(rows: &[usize]) -> String {
    let shown: Vec<String> = rows.iter().take(10).map(|r| r.to_string()).collect();
    let more = if rows.len() > 10 {
        format!(" and {} more", rows.len() - 10)
    } else {
        String::new()
    };
    if rows.len() == 1 {
        format!("row {}", shown[0])
    } else {
        format!("rows {}{more}", shown.join(", "))
    }
}
