//! Requests: which keys of which model to fetch, parsed from a small language and resolved
//! against the [`Registry`].
//!
//! ```text
//! Pokemon.id = 25
//! Pokemon.name = "pikachu"
//! Pokemon.id in [1, 4, 7]
//! Pokemon.id in 1..=151        (and 1..151, end excluded)
//! Date = (2024, 1, 31)         (no identifier: the model's primary index)
//! Date(year, month, day) in [(2024, 1, 30), (2024, 1, 31)]
//! ```
//!
//! Parsing checks syntax only; [`Registry::resolve`] checks the model, the identifier, every
//! value against the index type and the fetcher's parameter types, all before anything is
//! fetched. Errors point at the offending column with a caret.
//!
//! Ranges are never materialised: [`KeySet::into_keys`] yields keys one at a time, so
//! `Pokemon.id in 1..=1000000` costs the same memory as `Pokemon.id = 1`.
//!
//! A request goes through these steps, one file each:
//!
//! | file         | step                                                                     |
//! |--------------|--------------------------------------------------------------------------|
//! | `mod.rs`     | the request as data ([`Request`], [`KeySpec`]) and its errors            |
//! | `lex.rs`     | text → tokens with their columns                                         |
//! | `parse.rs`   | tokens → a [`Request`] (syntax only)                                     |
//! | `resolve.rs` | a [`Request`] + the [`Registry`] → a [`ResolvedRequest`], every value checked |
//! | `keys.rs`    | the checked keys ([`KeySet`]), streamed lazily                           |
//!
//! The registry sits below: it knows models and fetchers, and nothing of requests.

use std::fmt;
use std::ops::Range;

mod keys;
mod lex;
mod parse;
mod resolve;
#[cfg(test)]
mod tests;

use crate::model::Key;
use crate::registry::identifier_text;
#[cfg(doc)]
use crate::registry::Registry;

pub use keys::{KeyIter, KeySet, ResolvedRequest};

/// Longest request text accepted, in bytes.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;
/// Longest identifier (model or edge name) accepted, in characters.
const MAX_NAME_LEN: usize = 256;

/// A parsed request: a model, optionally the index edges, and the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    model: String,
    identifier: Option<Vec<String>>,
    keys: KeySpec,
    source: Option<SourceInfo>,
}

/// The keys a request asks for, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySpec {
    /// `= value` or `= (a, b, c)`.
    One(Key),
    /// `in [k1, k2, ...]`.
    List(Vec<Key>),
    /// `in start..end` (end excluded) or `in start..=end`.
    Range {
        /// First key.
        start: i64,
        /// Last key (included when `inclusive`).
        end: i64,
        /// `..=` rather than `..`.
        inclusive: bool,
    },
    /// A bare model (`Pokemon`): every key its list function (`#[kye::list]`) finds.
    All,
}

/// Where things were in the request text, for error carets.
#[derive(Debug, Clone, PartialEq)]
struct SourceInfo {
    text: String,
    model: Range<usize>,
    identifier: Option<Range<usize>>,
    /// One entry per key (list item, or the two range bounds), one span per value.
    values: Vec<Vec<Range<usize>>>,
}

impl Request {
    /// A request built in code (typed builders such as `Pokemon::by_id(25)` use this).
    /// `identifier: None` means the model's primary index.
    pub fn new(model: impl Into<String>, identifier: Option<Vec<String>>, keys: KeySpec) -> Self {
        Request {
            model: model.into(),
            identifier,
            keys,
            source: None,
        }
    }

    /// A request for one key by the given index edges.
    pub fn one(model: &str, identifier: &[&str], key: Key) -> Self {
        Request::new(
            model,
            Some(identifier.iter().map(|s| s.to_string()).collect()),
            KeySpec::One(key),
        )
    }

    /// Parses the request language.
    pub fn parse(text: &str) -> Result<Request, RequestError> {
        parse::Parser::new(text)?.request()
    }

    /// The model name as written.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The index edges as written (`None`: the model's primary index).
    pub fn identifier(&self) -> Option<&[String]> {
        self.identifier.as_deref()
    }

    /// The keys as written.
    pub fn keys(&self) -> &KeySpec {
        &self.keys
    }
}

impl std::str::FromStr for Request {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Request::parse(s)
    }
}

impl fmt::Display for Request {
    /// The request in the request language (parses back to the same request).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identifier {
            None => f.write_str(&self.model)?,
            Some(edges) => f.write_str(&identifier_text(&self.model, edges))?,
        }
        match &self.keys {
            KeySpec::One(k) => write!(f, " = {k}"),
            KeySpec::List(keys) => {
                f.write_str(" in [")?;
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}")?;
                }
                f.write_str("]")
            }
            KeySpec::Range {
                start,
                end,
                inclusive,
            } => write!(f, " in {start}..{}{end}", if *inclusive { "=" } else { "" }),
            KeySpec::All => Ok(()),
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// The text is not a request.
    Syntax,
    /// No model of that name is registered.
    UnknownModel,
    /// The model has no edge of that name.
    UnknownEdge,
    /// The edges exist but are not an index of the model.
    NotAnIndex,
    /// The identifier is valid but no fetcher serves it.
    NoFetcher,
    /// A value cannot be a key of the index (wrong type, wrong arity, does not fit the fetcher).
    InvalidValue,
    /// A range with no keys.
    EmptyRange,
    /// A bare model (every key) for a model without a list function.
    NoLister,
}

/// A request that cannot be parsed or resolved. Its `Display` shows the request with a caret
/// under the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    kind: RequestErrorKind,
    message: String,
    /// Character range in `input`.
    span: Option<Range<usize>>,
    input: Option<String>,
    help: Option<String>,
}

impl RequestError {
    fn new(kind: RequestErrorKind, message: impl Into<String>) -> Self {
        RequestError {
            kind,
            message: message.into(),
            span: None,
            input: None,
            help: None,
        }
    }

    fn at(mut self, source: Option<&SourceInfo>, span: Option<Range<usize>>) -> Self {
        if let (Some(src), Some(span)) = (source, span) {
            self.input = Some(src.text.clone());
            self.span = Some(span);
        }
        self
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> RequestErrorKind {
        self.kind
    }

    /// The one-line message (without the caret display).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 1-based column (in characters) of the offending part, when the request was parsed from text.
    pub fn column(&self) -> Option<usize> {
        self.span.as_ref().map(|s| s.start + 1)
    }

    /// A suggestion, e.g. `did you mean `name`?`.
    pub fn help_text(&self) -> Option<&str> {
        self.help.as_deref()
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let (Some(input), Some(span)) = (&self.input, &self.span) {
            let shown: String = input
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let width = span.end.saturating_sub(span.start).max(1);
            write!(
                f,
                "\n  {shown}\n  {}{}",
                " ".repeat(span.start),
                "^".repeat(width)
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RequestError {}
