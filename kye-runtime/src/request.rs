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

use std::fmt;
use std::ops::Range;

use kye_lang::{Primitive, Type};

use crate::model::{Key, KeyValue};
use crate::registry::{identifier_text, FetcherRegistration, RegisteredModel, Registry};

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
        Parser::new(text)?.request()
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

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Punct(&'static str),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(i) => format!("`{i}`"),
            Tok::Float(x) => format!("`{x}`"),
            Tok::Str(s) => format!("the string {s:?}"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::End => "the end of the request".to_string(),
        }
    }
}

struct Parser {
    toks: Vec<(Tok, Range<usize>)>,
    pos: usize,
    text: String,
}

fn syntax(text: &str, span: Range<usize>, message: impl Into<String>) -> RequestError {
    RequestError {
        kind: RequestErrorKind::Syntax,
        message: message.into(),
        span: Some(span),
        input: Some(text.to_string()),
        help: None,
    }
}

fn lex(text: &str) -> Result<Vec<(Tok, Range<usize>)>, RequestError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if i - start > MAX_NAME_LEN {
                return Err(syntax(
                    text,
                    start..i,
                    format!(
                        "name is too long ({} characters; the limit is {MAX_NAME_LEN})",
                        i - start
                    ),
                ));
            }
            toks.push((Tok::Ident(chars[start..i].iter().collect()), start..i));
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            // A '.' followed by a digit is a fraction; '..' is a range operator.
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    float = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                return Err(syntax(text, start..i + 1, "invalid number"));
            }
            let s: String = chars[start..i].iter().collect();
            let tok = if float {
                match s.parse::<f64>() {
                    Ok(x) if x.is_finite() => Tok::Float(x),
                    _ => {
                        return Err(syntax(
                            text,
                            start..i,
                            format!("number {s} is out of range"),
                        ))
                    }
                }
            } else {
                match s.parse::<i64>() {
                    Ok(v) => Tok::Int(v),
                    Err(_) => {
                        return Err(syntax(
                            text,
                            start..i,
                            format!(
                                "integer {s} is out of range (keys are between {} and {})",
                                i64::MIN,
                                i64::MAX
                            ),
                        ))
                    }
                }
            };
            toks.push((tok, start..i));
            continue;
        }
        if c == '"' || c == '\'' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(syntax(text, start..chars.len(), "unterminated string")),
                    Some(&ch) if ch == quote => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let esc = match chars.get(i + 1) {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('r') => '\r',
                            Some('0') => '\0',
                            Some('\\') => '\\',
                            Some('"') => '"',
                            Some('\'') => '\'',
                            Some(other) => {
                                return Err(syntax(
                                    text,
                                    i..i + 2,
                                    format!("unknown escape `\\{other}` in string"),
                                ))
                            }
                            None => {
                                return Err(syntax(text, start..chars.len(), "unterminated string"))
                            }
                        };
                        s.push(esc);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            toks.push((Tok::Str(s), start..i));
            continue;
        }
        let two: String = chars[i..(i + 3).min(chars.len())].iter().collect();
        let punct: Option<&'static str> = if two.starts_with("..=") {
            Some("..=")
        } else if two.starts_with("..") {
            Some("..")
        } else if two.starts_with("==") {
            Some("==")
        } else {
            match c {
                '.' => Some("."),
                '=' => Some("="),
                ',' => Some(","),
                '(' => Some("("),
                ')' => Some(")"),
                '[' => Some("["),
                ']' => Some("]"),
                _ => None,
            }
        };
        match punct {
            Some(p) => {
                i += p.len();
                toks.push((Tok::Punct(p), start..i));
            }
            None => {
                return Err(syntax(
                    text,
                    start..start + 1,
                    format!("unexpected character `{c}`"),
                ))
            }
        }
    }
    toks.push((Tok::End, chars.len()..chars.len()));
    Ok(toks)
}

impl Parser {
    fn new(text: &str) -> Result<Parser, RequestError> {
        if text.len() > MAX_REQUEST_LEN {
            return Err(RequestError::new(
                RequestErrorKind::Syntax,
                format!(
                    "request is too long ({} bytes; the limit is {MAX_REQUEST_LEN})",
                    text.len()
                ),
            ));
        }
        Ok(Parser {
            toks: lex(text)?,
            pos: 0,
            text: text.to_string(),
        })
    }

    fn peek(&self) -> &(Tok, Range<usize>) {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> (Tok, Range<usize>) {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(&self.peek().0, Tok::Punct(q) if *q == p)
    }

    fn err_here(&self, message: impl Into<String>) -> RequestError {
        syntax(&self.text, self.peek().1.clone(), message)
    }

    fn expect_punct(&mut self, p: &str, what: &str) -> Result<Range<usize>, RequestError> {
        if self.is_punct(p) {
            Ok(self.bump().1)
        } else {
            Err(self.err_here(format!(
                "expected {what}, found {}",
                self.peek().0.describe()
            )))
        }
    }

    fn ident(&mut self, what: &str) -> Result<(String, Range<usize>), RequestError> {
        match self.peek().clone() {
            (Tok::Ident(s), span) => {
                self.bump();
                Ok((s, span))
            }
            (other, _) => {
                Err(self.err_here(format!("expected {what}, found {}", other.describe())))
            }
        }
    }

    fn request(mut self) -> Result<Request, RequestError> {
        if matches!(self.peek().0, Tok::End) {
            return Err(self.err_here(
                "empty request; write e.g. `Pokemon.id = 25` or `Pokemon.id in 1..=151`",
            ));
        }
        let (model, model_span) = self.ident("a model name")?;
        let mut identifier = None;
        let mut ident_span = None;
        if self.is_punct(".") {
            self.bump();
            let (edge, span) = self.ident("an edge name after `.`")?;
            identifier = Some(vec![edge]);
            ident_span = Some(span);
        } else if self.is_punct("(") {
            let open = self.bump().1;
            let mut edges = Vec::new();
            loop {
                let (edge, _) = self.ident("an edge name")?;
                edges.push(edge);
                if self.is_punct(",") {
                    self.bump();
                    if self.is_punct(")") {
                        break;
                    }
                } else {
                    break;
                }
            }
            let close = self.expect_punct(")", "`,` or `)`")?;
            identifier = Some(edges);
            ident_span = Some(open.start..close.end);
        }
        let mut values = Vec::new();
        let keys = if self.is_punct("=") || self.is_punct("==") {
            self.bump();
            let (key, spans) = self.key()?;
            values.push(spans);
            KeySpec::One(key)
        } else if matches!(&self.peek().0, Tok::Ident(s) if s == "in") {
            self.bump();
            self.set(&mut values)?
        } else {
            let what = if identifier.is_some() {
                "`=` or `in`"
            } else {
                "`.`, `=` or `in`"
            };
            return Err(self.err_here(format!(
                "expected {what} after `{}`, found {}",
                self.text
                    .chars()
                    .take(self.peek().1.start)
                    .collect::<String>()
                    .trim_end(),
                self.peek().0.describe()
            )));
        };
        if !matches!(self.peek().0, Tok::End) {
            return Err(self.err_here(format!(
                "unexpected {} after the request",
                self.peek().0.describe()
            )));
        }
        Ok(Request {
            model,
            identifier,
            keys,
            source: Some(SourceInfo {
                text: self.text.clone(),
                model: model_span,
                identifier: ident_span,
                values,
            }),
        })
    }

    fn scalar(&mut self) -> Result<(KeyValue, Range<usize>), RequestError> {
        let (tok, span) = self.peek().clone();
        let v = match tok {
            Tok::Int(i) => KeyValue::Int(i),
            Tok::Float(x) => KeyValue::Float(x),
            Tok::Str(s) => KeyValue::String(s),
            Tok::Ident(s) if s == "true" || s == "TRUE" => KeyValue::Bool(true),
            Tok::Ident(s) if s == "false" || s == "FALSE" => KeyValue::Bool(false),
            Tok::Ident(s) => {
                return Err(self.err_here(format!(
                    "expected a value, found `{s}`; quote strings: \"{s}\""
                )))
            }
            Tok::Punct("(") => return Err(self.err_here("nested tuples are not allowed in a key")),
            other => {
                return Err(self.err_here(format!("expected a value, found {}", other.describe())))
            }
        };
        self.bump();
        Ok((v, span))
    }

    /// A scalar or a parenthesised tuple of scalars.
    fn key(&mut self) -> Result<(Key, Vec<Range<usize>>), RequestError> {
        if self.is_punct("(") {
            self.bump();
            let mut values = Vec::new();
            let mut spans = Vec::new();
            loop {
                let (v, s) = self.scalar()?;
                values.push(v);
                spans.push(s);
                if self.is_punct(",") {
                    self.bump();
                    if self.is_punct(")") {
                        break;
                    }
                } else {
                    break;
                }
            }
            self.expect_punct(")", "`,` or `)`")?;
            Ok((Key::new(values), spans))
        } else {
            let (v, s) = self.scalar()?;
            Ok((Key::from(v), vec![s]))
        }
    }

    fn set(&mut self, values: &mut Vec<Vec<Range<usize>>>) -> Result<KeySpec, RequestError> {
        if self.is_punct("[") {
            self.bump();
            let mut keys = Vec::new();
            while !self.is_punct("]") {
                let (k, spans) = self.key()?;
                keys.push(k);
                values.push(spans);
                if self.is_punct(",") {
                    self.bump();
                } else if !self.is_punct("]") {
                    return Err(self.err_here(format!(
                        "expected `,` or `]`, found {}",
                        self.peek().0.describe()
                    )));
                }
            }
            let close = self.bump().1;
            if keys.is_empty() {
                return Err(RequestError {
                    kind: RequestErrorKind::EmptyRange,
                    ..syntax(
                        &self.text,
                        close.start.saturating_sub(1)..close.end,
                        "empty list: nothing to fetch",
                    )
                });
            }
            return Ok(KeySpec::List(keys));
        }
        let (start, start_span) = match self.peek().clone() {
            (Tok::Int(i), s) => {
                self.bump();
                (i, s)
            }
            (other, _) => {
                return Err(self.err_here(format!(
                    "expected `[` or an integer range such as `1..=151` after `in`, found {}",
                    other.describe()
                )))
            }
        };
        let inclusive = if self.is_punct("..=") {
            true
        } else if self.is_punct("..") {
            false
        } else {
            return Err(self.err_here(format!(
                "expected `..` or `..=` after {start}, found {}",
                self.peek().0.describe()
            )));
        };
        self.bump();
        let (end, end_span) = match self.peek().clone() {
            (Tok::Int(i), s) => {
                self.bump();
                (i, s)
            }
            (other, _) => {
                return Err(self.err_here(format!(
                    "expected the integer end of the range, found {}",
                    other.describe()
                )))
            }
        };
        let empty = if inclusive { end < start } else { end <= start };
        if empty {
            return Err(RequestError {
                kind: RequestErrorKind::EmptyRange,
                ..syntax(
                    &self.text,
                    start_span.start..end_span.end,
                    format!(
                        "range {start}..{}{end} is empty: nothing to fetch",
                        if inclusive { "=" } else { "" }
                    ),
                )
            });
        }
        values.push(vec![start_span]);
        values.push(vec![end_span]);
        Ok(KeySpec::Range {
            start,
            end,
            inclusive,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// A request matched to its fetcher, with every key checked.
#[derive(Debug, Clone)]
pub struct ResolvedRequest {
    model: RegisteredModel,
    identifier: Vec<String>,
    fetcher: &'static FetcherRegistration,
    keys: KeySet,
}

impl ResolvedRequest {
    /// The model (with its schema, for validation).
    pub fn model(&self) -> &RegisteredModel {
        &self.model
    }

    /// The index edges the keys are for.
    pub fn identifier(&self) -> &[String] {
        &self.identifier
    }

    /// The function that fetches them.
    pub fn fetcher(&self) -> &'static FetcherRegistration {
        self.fetcher
    }

    /// The keys to fetch.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Splits into parts, e.g. to move the keys into a streaming task.
    pub fn into_parts(self) -> (RegisteredModel, &'static FetcherRegistration, KeySet) {
        (self.model, self.fetcher, self.keys)
    }
}

/// Checked keys of a resolved request. Ranges are kept as ranges: iterate them lazily with
/// [`KeySet::iter`] or [`KeySet::into_keys`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeySet {
    /// Explicit keys (one, or a list), duplicates removed, in request order.
    Keys(Vec<Key>),
    /// Every integer from `start` to `end`, both included.
    Range {
        /// First key.
        start: i64,
        /// Last key (included).
        end: i64,
    },
}

impl KeySet {
    /// Number of keys (a range of all i64 has 2^64 keys, hence `u64` saturating).
    pub fn len(&self) -> u64 {
        match self {
            KeySet::Keys(k) => k.len() as u64,
            KeySet::Range { start, end } => {
                let n = (*end as i128) - (*start as i128) + 1;
                u64::try_from(n.max(0)).unwrap_or(u64::MAX)
            }
        }
    }

    /// True when there are no keys (never for a resolved request).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys, lazily.
    pub fn iter(&self) -> KeyIter {
        self.clone().into_keys()
    }

    /// The keys, lazily, by value (`Send + 'static`: move it into a task).
    pub fn into_keys(self) -> KeyIter {
        match self {
            KeySet::Keys(k) => KeyIter::Keys(k.into_iter()),
            KeySet::Range { start, end } => KeyIter::Range(start..=end),
        }
    }
}

impl IntoIterator for KeySet {
    type Item = Key;
    type IntoIter = KeyIter;
    fn into_iter(self) -> KeyIter {
        self.into_keys()
    }
}

/// Iterator over the keys of a [`KeySet`]; ranges yield one key at a time.
#[derive(Debug, Clone)]
pub enum KeyIter {
    /// Explicit keys.
    Keys(std::vec::IntoIter<Key>),
    /// An integer range.
    Range(std::ops::RangeInclusive<i64>),
}

impl Iterator for KeyIter {
    type Item = Key;
    fn next(&mut self) -> Option<Key> {
        match self {
            KeyIter::Keys(k) => k.next(),
            KeyIter::Range(r) => r.next().map(Key::single),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            KeyIter::Keys(k) => k.size_hint(),
            KeyIter::Range(r) => r.size_hint(),
        }
    }
}

/// The Levenshtein distance between two short names.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(!ca.eq_ignore_ascii_case(cb));
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a typo's distance, if any.
fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = name.chars().count().div_ceil(3);
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn list_indexes(model: &kye_lang::Model) -> String {
    model
        .indexes
        .iter()
        .map(|ix| identifier_text(&model.name, &ix.edges))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error for a request of a value object (a model without an index): nothing identifies
/// its records, which live inside the records of the models that nest it.
fn value_object_request(registry: &Registry, def: &kye_lang::Model) -> RequestError {
    let parents: Vec<&str> = registry
        .models()
        .filter(|m| {
            m.definition()
                .edges
                .iter()
                .any(|e| matches!(&e.ty, Type::Model(t) if *t == def.name))
        })
        .map(|m| m.name())
        .collect();
    let err = RequestError::new(
        RequestErrorKind::NotAnIndex,
        format!(
            "`{}` has no index: it is a value object, stored inside the records that nest it, and cannot be requested on its own",
            def.name
        ),
    );
    if parents.is_empty() {
        err.help(format!(
            "request the model that holds it, or give `{}` an index if some edges identify its records",
            def.name
        ))
    } else {
        err.help(format!(
            "request the model that holds it ({})",
            parents.join(", ")
        ))
    }
}

pub(crate) fn resolve(registry: &Registry, req: &Request) -> Result<ResolvedRequest, RequestError> {
    let src = req.source.as_ref();
    let model_span = src.map(|s| s.model.clone());
    let ident_span = src.and_then(|s| s.identifier.clone());

    // 1. The model.
    let Some(model) = registry.model(&req.model) else {
        let mut err = RequestError::new(
            RequestErrorKind::UnknownModel,
            format!("unknown model `{}`", req.model),
        )
        .at(src, model_span);
        let names: Vec<&str> = registry.models().map(|m| m.name()).collect();
        err = match suggest(&req.model, names.iter().copied()) {
            Some(s) => err.help(format!("did you mean `{s}`?")),
            None if names.is_empty() => err.help(
                "no models are registered in this binary: declare them with `kye::models!`; if they live in another crate, name that crate once (`use my_sources as _;`) so the linker keeps it",
            ),
            None => err.help(format!("known models: {}", names.join(", "))),
        };
        return Err(err);
    };
    let def = model.definition();
    if def.is_value_object() {
        return Err(value_object_request(registry, def).at(src, model_span));
    }

    // 2. The identifier (default: the primary index).
    let identifier: Vec<String> = match &req.identifier {
        None => def
            .primary_index()
            .map(|ix| ix.edges.clone())
            .unwrap_or_default(),
        Some(edges) => {
            for edge in edges {
                if def.edge(edge).is_none() {
                    let mut err = RequestError::new(
                        RequestErrorKind::UnknownEdge,
                        format!("model `{}` has no edge `{edge}`", def.name),
                    )
                    .at(src, ident_span.clone());
                    let index_edges = def
                        .indexes
                        .iter()
                        .flat_map(|ix| ix.edges.iter().map(String::as_str));
                    let all_edges = def.edges.iter().map(|e| e.name.as_str());
                    err = match suggest(edge, index_edges).or_else(|| suggest(edge, all_edges)) {
                        Some(s) => err.help(format!("did you mean `{s}`?")),
                        None => err.help(format!("its indexes are {}", list_indexes(def))),
                    };
                    return Err(err);
                }
            }
            let names: Vec<&str> = edges.iter().map(String::as_str).collect();
            if def.index_named(&names).is_none() {
                return Err(RequestError::new(
                    RequestErrorKind::NotAnIndex,
                    format!(
                        "`{}` is not an index of `{}`",
                        identifier_text(&def.name, edges),
                        def.name
                    ),
                )
                .at(src, ident_span)
                .help(format!("its indexes are {}", list_indexes(def))));
            }
            edges.clone()
        }
    };
    let ident_text = identifier_text(&def.name, &identifier);

    // 3. Every value against the index's edge types.
    let mut kinds = Vec::new();
    for edge_name in &identifier {
        let Some(edge) = def.edge(edge_name) else {
            return Err(RequestError::new(
                RequestErrorKind::UnknownEdge,
                format!("model `{}` has no edge `{edge_name}`", def.name),
            ));
        };
        match &edge.ty {
            Type::Model(target) => {
                return Err(RequestError::new(
                    RequestErrorKind::InvalidValue,
                    format!(
                        "`{ident_text}` includes `{edge_name}`, a reference to model `{target}`; requests by reference are not supported"
                    ),
                )
                .at(src, ident_span.or(model_span)))
            }
            ty => kinds.push((edge_name.as_str(), ty.primitive().unwrap_or(Primitive::String))),
        }
    }
    let value_spans =
        |i: usize| -> Option<&Vec<Range<usize>>> { src.and_then(|s| s.values.get(i)) };
    let check_key = |key: &Key, i: usize| -> Result<Key, RequestError> {
        let spans = value_spans(i);
        let whole = spans.and_then(|s| Some(s.first()?.start..s.last()?.end));
        if key.len() != kinds.len() {
            let expected = if kinds.len() == 1 {
                "one value".to_string()
            } else {
                format!(
                    "a tuple of {} values ({})",
                    kinds.len(),
                    identifier.join(", ")
                )
            };
            return Err(RequestError::new(
                RequestErrorKind::InvalidValue,
                format!("`{ident_text}` takes {expected}, found {key}"),
            )
            .at(src, whole));
        }
        let mut out = Vec::with_capacity(kinds.len());
        for (j, (v, (edge, prim))) in key.values().iter().zip(&kinds).enumerate() {
            let span = spans.and_then(|s| s.get(j).cloned());
            let bad = |expected: &str| {
                RequestError::new(
                    RequestErrorKind::InvalidValue,
                    format!(
                        "`{}.{edge}` is a {prim} index and takes {expected}; {v} is {} {}",
                        def.name,
                        article(v.kind()),
                        v.kind()
                    ),
                )
                .at(src, span.clone())
            };
            let converted = match (prim, v) {
                (Primitive::Number, KeyValue::Int(_)) => v.clone(),
                (Primitive::Number, KeyValue::Float(x))
                    if x.fract() == 0.0 && *x >= i64::MIN as f64 && *x < i64::MAX as f64 =>
                {
                    KeyValue::Int(*x as i64)
                }
                (Primitive::Number, KeyValue::Float(_)) => {
                    return Err(bad("integers").help("Number indexes hold integers"))
                }
                (Primitive::Number, _) => return Err(bad("integers")),
                (Primitive::String, KeyValue::String(_)) => v.clone(),
                (Primitive::String, KeyValue::Int(_) | KeyValue::Float(_)) => {
                    return Err(bad("strings").help(format!("quote it: \"{v}\"")))
                }
                (Primitive::String, _) => return Err(bad("strings")),
                (Primitive::Boolean, KeyValue::Bool(_)) => v.clone(),
                (Primitive::Boolean, _) => return Err(bad("`true` or `false`")),
            };
            out.push(converted);
        }
        Ok(Key::new(out))
    };
    // Position in the request of each kept key (duplicates are dropped), for error carets.
    let mut positions: Vec<usize> = vec![0];
    let keys = match &req.keys {
        KeySpec::One(k) => KeySet::Keys(vec![check_key(k, 0)?]),
        KeySpec::List(list) => {
            positions.clear();
            let mut seen = std::collections::HashSet::new();
            let mut keys = Vec::with_capacity(list.len());
            for (i, k) in list.iter().enumerate() {
                let k = check_key(k, i)?;
                if seen.insert(k.to_string()) {
                    keys.push(k);
                    positions.push(i);
                }
            }
            KeySet::Keys(keys)
        }
        KeySpec::Range {
            start,
            end,
            inclusive,
        } => {
            let whole = src.and_then(|s| {
                Some(s.values.first()?.first()?.start..s.values.get(1)?.first()?.end)
            });
            if kinds.len() != 1 || kinds[0].1 != Primitive::Number {
                return Err(RequestError::new(
                    RequestErrorKind::InvalidValue,
                    format!("a range needs a single Number index; `{ident_text}` is not one"),
                )
                .at(src, whole)
                .help("list the keys instead: `in [...]`"));
            }
            let end = if *inclusive {
                Some(*end)
            } else {
                end.checked_sub(1)
            };
            match end {
                Some(end) if end >= *start => KeySet::Range { start: *start, end },
                _ => {
                    return Err(RequestError::new(
                        RequestErrorKind::EmptyRange,
                        format!(
                            "range {start}..{} is empty: nothing to fetch",
                            req_end(&req.keys)
                        ),
                    )
                    .at(src, whole))
                }
            }
        }
    };

    // 4. A fetcher for the identifier.
    let Some(fetcher) = registry.fetcher(&def.name, &identifier) else {
        let others: Vec<String> = registry
            .fetchers_for(&def.name)
            .map(|f| {
                format!(
                    "{} (`{}` at {})",
                    f.identifier_text(),
                    f.function,
                    f.location()
                )
            })
            .collect();
        let err = RequestError::new(
            RequestErrorKind::NoFetcher,
            format!("no fetcher is registered for `{ident_text}`"),
        )
        .at(src, ident_span.or(model_span));
        return Err(if others.is_empty() {
            err.help(format!(
                "model `{}` has no fetcher at all; if its fetchers live in a crate this binary never names, the linker dropped that crate: add `use my_sources as _;` (with that crate's name) to the binary",
                def.name
            ))
        } else {
            err.help(format!("fetchers exist for: {}", others.join(", ")))
        });
    };

    // 5. The fetcher's parameter types.
    let fit = |key: &Key, span: Option<Range<usize>>| -> Result<(), RequestError> {
        fetcher.check_key(key).map_err(|e| {
            RequestError::new(
                RequestErrorKind::InvalidValue,
                format!(
                    "key {key} cannot be given to `{}`: {}",
                    fetcher.function,
                    e.message()
                ),
            )
            .at(src, span)
        })
    };
    match &keys {
        KeySet::Keys(list) => {
            for (k, &i) in list.iter().zip(&positions) {
                fit(
                    k,
                    value_spans(i).and_then(|s| Some(s.first()?.start..s.last()?.end)),
                )?;
            }
        }
        KeySet::Range { start, end } => {
            // Parameter conversions are monotonic range checks: both ends fitting means all fit.
            fit(
                &Key::single(*start),
                value_spans(0).and_then(|s| s.first().cloned()),
            )?;
            fit(
                &Key::single(*end),
                value_spans(1).and_then(|s| s.first().cloned()),
            )?;
        }
    }

    Ok(ResolvedRequest {
        model: model.clone(),
        identifier,
        fetcher,
        keys,
    })
}

fn req_end(keys: &KeySpec) -> String {
    match keys {
        KeySpec::Range { end, inclusive, .. } => {
            format!("{}{end}", if *inclusive { "=" } else { "" })
        }
        _ => String::new(),
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::model::{FetchFuture, KeyError, OutputKind};
    use crate::registry::{RegisteredModel, Registry};

    const SCHEMA: &str = "
Pokemon(id)(name) {
  id: Number
  name: String
  weight: Number
}
Date(year, month, day) {
  year: Number
  month: Number
  day: Number
}
Flag(enabled) {
  enabled: Boolean
}
Orphan(code) {
  code: String
}
";

    fn call(_: &Key, _: Context) -> FetchFuture {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn any_key(_: &Key) -> Result<(), KeyError> {
        Ok(())
    }

    /// Like a `u8` parameter: values above 255 do not fit.
    fn small_key(key: &Key) -> Result<(), KeyError> {
        match key.values() {
            [KeyValue::Int(i)] if u8::try_from(*i).is_err() => Err(KeyError::new(format!(
                "key {i} does not fit the fetcher's parameter type `u8`"
            ))),
            _ => Ok(()),
        }
    }

    const fn fetcher(
        model: &'static str,
        identifier: &'static [&'static str],
        function: &'static str,
        line: u32,
        check: fn(&Key) -> Result<(), KeyError>,
    ) -> FetcherRegistration {
        FetcherRegistration {
            model,
            identifier,
            function,
            module_path: "sources::pokeapi",
            file: "src/pokeapi.rs",
            line,
            is_async: true,
            doc: "",
            output: OutputKind::Record,
            call,
            check,
        }
    }

    static BY_ID: FetcherRegistration = fetcher("Pokemon", &["id"], "get_pokemon", 10, small_key);
    static DATE: FetcherRegistration =
        fetcher("Date", &["year", "month", "day"], "get_date", 20, any_key);
    static FLAG: FetcherRegistration = fetcher("Flag", &["enabled"], "get_flag", 30, any_key);

    fn schema() -> &'static kye_lang::Schema {
        static S: std::sync::OnceLock<kye_lang::Schema> = std::sync::OnceLock::new();
        S.get_or_init(|| kye_lang::compile_str("test.kye", SCHEMA).expect("test schema compiles"))
    }

    fn registry() -> Registry {
        let s = schema();
        let models = ["Pokemon", "Date", "Flag", "Orphan"]
            .into_iter()
            .map(|n| RegisteredModel::new(s, n).unwrap());
        Registry::from_parts(models, [&BY_ID, &DATE, &FLAG]).unwrap()
    }

    fn err(text: &str) -> String {
        match registry().resolve_str(text) {
            Ok(r) => panic!("{text:?} resolved to {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn keys(text: &str) -> Vec<String> {
        let r = registry().resolve_str(text).unwrap();
        r.keys().iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for text in [
            "Pokemon.id = 25",
            "Pokemon.name = \"pikachu\"",
            "Pokemon.id in [1, 4, 7]",
            "Pokemon.id in 1..=151",
            "Pokemon.id in 1..151",
            "Date = (2024, 1, 31)",
            "Date(year, month, day) in [(2024, 1, 30), (2024, 1, 31)]",
            "Flag.enabled = true",
            "Pokemon.id = -3",
        ] {
            let r = Request::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(Request::parse(&r.to_string()).unwrap(), r);
        }
        let r = Request::parse("  Pokemon . id==25 ").unwrap();
        assert_eq!(r.to_string(), "Pokemon.id = 25");
        let r = Request::parse("Pokemon.name = 'mr. mime'").unwrap();
        assert_eq!(r.keys(), &KeySpec::One(Key::single("mr. mime")));
    }

    #[test]
    fn syntax_errors_point_at_the_column() {
        let e = Request::parse("Pokemon.id 25").unwrap_err();
        assert_eq!(e.kind(), RequestErrorKind::Syntax);
        assert_eq!(e.column(), Some(12));
        assert_eq!(
            e.to_string(),
            "expected `=` or `in` after `Pokemon.id`, found `25`\n  Pokemon.id 25\n             ^^"
        );
        assert_eq!(
            Request::parse("Pokemon.id = pikachu").unwrap_err().to_string(),
            "expected a value, found `pikachu`; quote strings: \"pikachu\"\n  Pokemon.id = pikachu\n               ^^^^^^^"
        );
        assert_eq!(
            Request::parse("Pokemon.name = \"pika")
                .unwrap_err()
                .to_string(),
            "unterminated string\n  Pokemon.name = \"pika\n                 ^^^^^"
        );
        assert_eq!(
            Request::parse("Pokemon.id in [1, 2").unwrap_err().to_string(),
            "expected `,` or `]`, found the end of the request\n  Pokemon.id in [1, 2\n                     ^"
        );
        assert_eq!(
            Request::parse("").unwrap_err().message(),
            "empty request; write e.g. `Pokemon.id = 25` or `Pokemon.id in 1..=151`"
        );
        assert_eq!(
            Request::parse("Pokemon.id = 25 extra")
                .unwrap_err()
                .message(),
            "unexpected `extra` after the request"
        );
        assert_eq!(
            Request::parse("Pokemon.id in 10..1")
                .unwrap_err()
                .to_string(),
            "range 10..1 is empty: nothing to fetch\n  Pokemon.id in 10..1\n                ^^^^^"
        );
        assert_eq!(
            Request::parse("Pokemon.id in []").unwrap_err().kind(),
            RequestErrorKind::EmptyRange
        );
    }

    #[test]
    fn absurd_input_is_an_error_not_a_panic() {
        let e = Request::parse("Pokemon.id = 99999999999999999999999").unwrap_err();
        assert_eq!(
            e.message(),
            "integer 99999999999999999999999 is out of range (keys are between -9223372036854775808 and 9223372036854775807)"
        );
        assert_eq!(
            Request::parse("Pokemon.id = 1e999").unwrap_err().message(),
            "number 1e999 is out of range"
        );
        let long = format!("Pokemon.name = \"{}\"", "x".repeat(MAX_REQUEST_LEN));
        assert_eq!(
            Request::parse(&long).unwrap_err().message(),
            format!(
                "request is too long ({} bytes; the limit is 65536)",
                long.len()
            )
        );
        let deep = format!("Date = {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(
            Request::parse(&deep).unwrap_err().message(),
            "nested tuples are not allowed in a key"
        );
        let name = format!("{} = 1", "P".repeat(1000));
        assert_eq!(
            Request::parse(&name).unwrap_err().message(),
            "name is too long (1000 characters; the limit is 256)"
        );
        for junk in [
            "\u{0}",
            "Pokemon.id = \u{7}",
            "Pokemon.id in 1..",
            "Pokemon.",
            "..=",
            "-",
        ] {
            assert!(Request::parse(junk).is_err(), "{junk:?}");
        }
        // The full i64 range resolves lazily and counts without overflow.
        let r = registry().resolve_str("Pokemon.id in -9223372036854775808..=9223372036854775807");
        assert!(r.is_err(), "u8 parameter rejects the ends");
    }

    #[test]
    fn unknown_model_suggests_the_closest() {
        assert_eq!(
            err("Pokemn.id = 25"),
            "unknown model `Pokemn`\n  Pokemn.id = 25\n  ^^^^^^\nhelp: did you mean `Pokemon`?"
        );
        assert_eq!(
            err("Zebra.id = 1"),
            "unknown model `Zebra`\n  Zebra.id = 1\n  ^^^^^\nhelp: known models: Date, Flag, Orphan, Pokemon"
        );
    }

    #[test]
    fn unknown_or_non_index_identifiers() {
        assert_eq!(
            err("Pokemon.nmae = \"pikachu\""),
            "model `Pokemon` has no edge `nmae`\n  Pokemon.nmae = \"pikachu\"\n          ^^^^\nhelp: did you mean `name`?"
        );
        assert_eq!(
            err("Pokemon.weight = 60"),
            "`Pokemon.weight` is not an index of `Pokemon`\n  Pokemon.weight = 60\n          ^^^^^^\nhelp: its indexes are Pokemon.id, Pokemon.name"
        );
        assert_eq!(
            err("Date.year = 2024"),
            "`Date.year` is not an index of `Date`\n  Date.year = 2024\n       ^^^^\nhelp: its indexes are Date(year, month, day)"
        );
    }

    #[test]
    fn identifier_without_fetcher_lists_the_ones_with() {
        assert_eq!(
            err("Pokemon.name = \"pikachu\""),
            "no fetcher is registered for `Pokemon.name`\n  Pokemon.name = \"pikachu\"\n          ^^^^\nhelp: fetchers exist for: Pokemon.id (`get_pokemon` at src/pokeapi.rs:10)"
        );
        let e = registry().resolve_str("Orphan.code = \"x\"").unwrap_err();
        assert_eq!(e.kind(), RequestErrorKind::NoFetcher);
        assert!(
            e.help_text().unwrap().contains("use my_sources as _;"),
            "{e}"
        );
    }

    #[test]
    fn values_are_checked_before_anything_is_fetched() {
        assert_eq!(
            err("Pokemon.id = \"abc\""),
            "`Pokemon.id` is a Number index and takes integers; \"abc\" is a string\n  Pokemon.id = \"abc\"\n               ^^^^^"
        );
        assert_eq!(
            err("Pokemon.id = 2.5"),
            "`Pokemon.id` is a Number index and takes integers; 2.5 is a number\n  Pokemon.id = 2.5\n               ^^^\nhelp: Number indexes hold integers"
        );
        assert_eq!(
            err("Pokemon.id in [1, \"two\", 3]"),
            "`Pokemon.id` is a Number index and takes integers; \"two\" is a string\n  Pokemon.id in [1, \"two\", 3]\n                    ^^^^^"
        );
        assert_eq!(
            err("Date = (2024, 1)"),
            "`Date(year, month, day)` takes a tuple of 3 values (year, month, day), found (2024, 1)\n  Date = (2024, 1)\n          ^^^^^^^"
        );
        assert_eq!(
            err("Flag.enabled = 1"),
            "`Flag.enabled` is a Boolean index and takes `true` or `false`; 1 is an integer\n  Flag.enabled = 1\n                 ^"
        );
        assert_eq!(
            err("Date in 1..=3"),
            "a range needs a single Number index; `Date(year, month, day)` is not one\n  Date in 1..=3\n          ^^^^^\nhelp: list the keys instead: `in [...]`"
        );
        // The fetcher's parameter type (u8 here) is checked too, range ends included.
        assert_eq!(
            err("Pokemon.id in [1, 300]"),
            "key 300 cannot be given to `get_pokemon`: key 300 does not fit the fetcher's parameter type `u8`\n  Pokemon.id in [1, 300]\n                    ^^^"
        );
        assert_eq!(
            err("Pokemon.id in 1..=1000"),
            "key 1000 cannot be given to `get_pokemon`: key 1000 does not fit the fetcher's parameter type `u8`\n  Pokemon.id in 1..=1000\n                    ^^^^"
        );
    }

    #[test]
    fn resolution_yields_checked_keys() {
        assert_eq!(keys("Pokemon.id = 25"), ["25"]);
        assert_eq!(keys("Pokemon = 25.0"), ["25"]);
        assert_eq!(keys("Pokemon.id in [7, 1, 7, 4]"), ["7", "1", "4"]);
        assert_eq!(keys("Pokemon.id in 1..4"), ["1", "2", "3"]);
        assert_eq!(keys("Pokemon.id in 1..=3"), ["1", "2", "3"]);
        assert_eq!(keys("Date = (2024, 1, 31)"), ["(2024, 1, 31)"]);
        assert_eq!(keys("Flag.enabled = false"), ["false"]);
        let r = registry()
            .resolve_str("Date(year, month, day) = (2024, 2, 29)")
            .unwrap();
        assert_eq!(r.fetcher().function, "get_date");
        assert_eq!(r.identifier(), ["year", "month", "day"]);
        assert_eq!(r.model().name(), "Date");
    }

    #[test]
    fn ranges_stream_without_materialising() {
        let set = KeySet::Range {
            start: 1,
            end: 1_000_000_000_000,
        };
        assert_eq!(set.len(), 1_000_000_000_000);
        let mut it = set.into_keys();
        assert_eq!(it.next(), Some(Key::single(1i64)));
        assert_eq!(it.nth(9), Some(Key::single(11i64)));
        let all = KeySet::Range {
            start: i64::MIN,
            end: i64::MAX,
        };
        assert_eq!(all.len(), u64::MAX);
    }

    #[test]
    fn typed_requests_resolve_like_parsed_ones() {
        let req = Request::one("Pokemon", &["id"], Key::single(25i64));
        assert_eq!(req.to_string(), "Pokemon.id = 25");
        let r = registry().resolve(&req).unwrap();
        assert_eq!(r.fetcher().function, "get_pokemon");
        let bad = Request::one("Pokemon", &["id"], Key::single("x"));
        // No source text: the message without a caret.
        assert_eq!(
            registry().resolve(&bad).unwrap_err().to_string(),
            "`Pokemon.id` is a Number index and takes integers; \"x\" is a string"
        );
    }
}
