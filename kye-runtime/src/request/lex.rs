//! Requests, step 1: the text as tokens (names, numbers, strings, punctuation), each with its
//! character range for error carets.

use std::ops::Range;

use super::{RequestError, RequestErrorKind, MAX_NAME_LEN};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Punct(&'static str),
    End,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
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

/// A syntax error at `span` of `text`.
pub(super) fn syntax(text: &str, span: Range<usize>, message: impl Into<String>) -> RequestError {
    RequestError {
        kind: RequestErrorKind::Syntax,
        message: message.into(),
        span: Some(span),
        input: Some(text.to_string()),
        help: None,
    }
}

/// The tokens of `text`, ending with [`Tok::End`].
pub(super) fn lex(text: &str) -> Result<Vec<(Tok, Range<usize>)>, RequestError> {
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
