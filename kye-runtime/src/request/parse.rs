//! Requests, step 2: tokens → a [`Request`]. Syntax only: whether the model, the edges and
//! the values exist or fit is resolution's business.

use std::ops::Range;

use super::lex::{lex, syntax, Tok};
use super::{KeySpec, Request, RequestError, RequestErrorKind, SourceInfo, MAX_REQUEST_LEN};
use crate::model::{Key, KeyValue};

/// A recursive-descent parser over the tokens of one request.
pub(super) struct Parser {
    toks: Vec<(Tok, Range<usize>)>,
    pos: usize,
    text: String,
}

impl Parser {
    pub(super) fn new(text: &str) -> Result<Parser, RequestError> {
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

    fn integer(&mut self, what: &str) -> Result<(i64, Range<usize>), RequestError> {
        match self.peek().clone() {
            (Tok::Int(i), span) => {
                self.bump();
                Ok((i, span))
            }
            (other, _) => {
                Err(self.err_here(format!("expected {what}, found {}", other.describe())))
            }
        }
    }

    pub(super) fn request(mut self) -> Result<Request, RequestError> {
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
        let keys = if identifier.is_none() && matches!(self.peek().0, Tok::End) {
            // A bare model: every key its list function finds.
            KeySpec::All
        } else if self.is_punct("=") || self.is_punct("==") {
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
        let (start, start_span) =
            self.integer("`[` or an integer range such as `1..=151` after `in`")?;
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
        let (end, end_span) = self.integer("the integer end of the range")?;
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
