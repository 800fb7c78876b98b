//! The lexer: source text to tokens.
//!
//! Identifiers are strict ASCII (`[A-Za-z_][A-Za-z0-9_]*`) because model and edge names later
//! become SQL table/column names and Rust identifiers. A name starting with an uppercase letter
//! is a type name (`User`, `String`), one starting with a lowercase letter or `_` is an edge name
//! (`user_id`), as in the original kye grammar.
//!
//! The lexer never fails: problems (an unterminated string, a stray character) become
//! [`Diagnostic`]s and lexing goes on, so that the parser can report every error at once.

use crate::diagnostic::Diagnostic;
use crate::span::{FileId, Span};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A name starting with an uppercase letter: `User`, `String`.
    TypeName(String),
    /// A name starting with a lowercase letter or `_`: `user_id`.
    EdgeName(String),
    /// The `assert` keyword.
    Assert,
    /// A number literal (always non-negative; `-` is an operator).
    Number(f64),
    /// A string literal, escapes resolved.
    Str(String),
    /// A regular expression literal `/.../`: the pattern between the slashes.
    Regex(String),
    /// `TRUE`, `FALSE`, `true`, `false`.
    Bool(bool),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `.`
    Dot,
    /// `?`
    Question,
    /// `!`
    Bang,
    /// `+`
    Plus,
    /// `*`
    Star,
    /// `-`
    Minus,
    /// `/` (division; a regex is lexed as [`TokenKind::Regex`])
    Slash,
    /// `%`
    Percent,
    /// `|`
    Pipe,
    /// `&`
    Amp,
    /// `^`
    Caret,
    /// `~`
    Tilde,
    /// `==`
    EqEq,
    /// `=` (not an operator of kye; kept so the parser can suggest `==` or `:`)
    Eq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// End of input.
    Eof,
}

impl TokenKind {
    /// How the token is described in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::TypeName(n) => format!("type name `{n}`"),
            TokenKind::EdgeName(n) => format!("edge name `{n}`"),
            TokenKind::Assert => "`assert`".into(),
            TokenKind::Number(_) => "a number".into(),
            TokenKind::Str(_) => "a string".into(),
            TokenKind::Regex(_) => "a regular expression".into(),
            TokenKind::Bool(_) => "a boolean".into(),
            TokenKind::Eof => "end of file".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// The punctuation as written (empty for tokens carrying a value).
    pub fn symbol(&self) -> &'static str {
        match self {
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::Comma => ",",
            TokenKind::Colon => ":",
            TokenKind::Dot => ".",
            TokenKind::Question => "?",
            TokenKind::Bang => "!",
            TokenKind::Plus => "+",
            TokenKind::Star => "*",
            TokenKind::Minus => "-",
            TokenKind::Slash => "/",
            TokenKind::Percent => "%",
            TokenKind::Pipe => "|",
            TokenKind::Amp => "&",
            TokenKind::Caret => "^",
            TokenKind::Tilde => "~",
            TokenKind::EqEq => "==",
            TokenKind::Eq => "=",
            TokenKind::NotEq => "!=",
            TokenKind::Lt => "<",
            TokenKind::Le => "<=",
            TokenKind::Gt => ">",
            TokenKind::Ge => ">=",
            TokenKind::Assert => "assert",
            _ => "",
        }
    }

    /// True for tokens after which a `/` means division rather than the start of a regex.
    fn ends_operand(&self) -> bool {
        matches!(
            self,
            TokenKind::TypeName(_)
                | TokenKind::EdgeName(_)
                | TokenKind::Number(_)
                | TokenKind::Str(_)
                | TokenKind::Regex(_)
                | TokenKind::Bool(_)
                | TokenKind::RParen
                | TokenKind::RBracket
        )
    }
}

/// A token with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What the token is.
    pub kind: TokenKind,
    /// Where it is.
    pub span: Span,
    /// 0-based line the token starts on.
    pub line: u32,
    /// True when a line break (or the start of the file) comes between the previous token and this one.
    pub newline_before: bool,
}

/// A `#` comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    /// The text after `#` (one leading space removed, trailing whitespace trimmed).
    pub text: String,
    /// 0-based line of the comment.
    pub line: u32,
    /// True when nothing but whitespace precedes the comment on its line.
    pub own_line: bool,
}

/// The result of lexing one file.
#[derive(Debug, Clone, Default)]
pub struct Lexed {
    /// Tokens, always ending with one [`TokenKind::Eof`].
    pub tokens: Vec<Token>,
    /// All comments, in order.
    pub comments: Vec<Comment>,
    /// Lexical errors.
    pub diagnostics: Vec<Diagnostic>,
}

/// Splits `text` into tokens. Never panics; errors are returned as diagnostics.
pub fn lex(file: FileId, text: &str) -> Lexed {
    Lexer {
        file,
        text,
        bytes: text.as_bytes(),
        pos: 0,
        line: 0,
        newline: true,
        line_has_token: false,
        out: Lexed::default(),
    }
    .run()
}

struct Lexer<'a> {
    file: FileId,
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    newline: bool,
    line_has_token: bool,
    out: Lexed,
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Lexer<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn error(&mut self, code: &'static str, message: impl Into<String>, span: Span, label: &str) {
        self.out
            .diagnostics
            .push(Diagnostic::error(code, message, span, label));
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        let tok = Token {
            kind,
            span: self.span(start, self.pos),
            line: self.line,
            newline_before: self.newline,
        };
        self.out.tokens.push(tok);
        self.newline = false;
        self.line_has_token = true;
    }

    fn peek(&self, ahead: usize) -> u8 {
        self.bytes.get(self.pos + ahead).copied().unwrap_or(0)
    }

    /// The char starting at `pos` (the lexer only ever stops on char boundaries).
    fn char_at(&self, pos: usize) -> char {
        self.text
            .get(pos..)
            .and_then(|s| s.chars().next())
            .unwrap_or('\0')
    }

    fn prev_ends_operand(&self) -> bool {
        self.out
            .tokens
            .last()
            .is_some_and(|t| t.kind.ends_operand())
    }

    fn run(mut self) -> Lexed {
        // A UTF-8 byte order mark (some Windows editors write one) is not content.
        if self.text.starts_with('\u{feff}') {
            self.pos = '\u{feff}'.len_utf8();
        }
        while self.pos < self.bytes.len() {
            let start = self.pos;
            let b = self.bytes[self.pos];
            match b {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.newline = true;
                    self.line_has_token = false;
                }
                b' ' | b'\t' | b'\r' | b'\x0c' => self.pos += 1,
                b'#' => self.comment(),
                b'"' => self.string(),
                b'\'' => self.single_quoted(),
                b'0'..=b'9' => self.number(),
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => self.ident(),
                b'/' if !self.prev_ends_operand() => self.regex(),
                _ if b >= 0x80 => {
                    let c = self.char_at(start);
                    self.pos += c.len_utf8().max(1);
                    if c.is_alphabetic() {
                        // A word with non-ASCII letters: swallow the whole word, one error.
                        while self.pos < self.bytes.len()
                            && (is_ident_continue(self.bytes[self.pos])
                                || (self.bytes[self.pos] >= 0x80
                                    && self.char_at(self.pos).is_alphanumeric()))
                        {
                            self.pos += self.char_at(self.pos).len_utf8().max(1);
                        }
                        let span = self.span(start, self.pos);
                        self.error(
                            "kye::non-ascii-identifier",
                            format!(
                                "identifier `{}` contains non-ASCII letters",
                                &self.text[start..self.pos]
                            ),
                            span,
                            "names may only use ASCII letters, digits and `_`",
                        );
                        // Keep a placeholder token so the parser does not report a second error.
                        let name = self.text[start..self.pos].to_string();
                        let upper = c.is_uppercase();
                        self.push(
                            if upper {
                                TokenKind::TypeName(name)
                            } else {
                                TokenKind::EdgeName(name)
                            },
                            start,
                        );
                    } else if !c.is_whitespace() {
                        let span = self.span(start, self.pos);
                        self.error(
                            "kye::unexpected-character",
                            format!("unexpected character `{c}`"),
                            span,
                            "not part of the kye language",
                        );
                    }
                }
                _ => self.punct(),
            }
        }
        let end = self.bytes.len();
        self.out.tokens.push(Token {
            kind: TokenKind::Eof,
            span: self.span(end, end),
            line: self.line,
            newline_before: true,
        });
        self.out
    }

    fn comment(&mut self) {
        let own_line = !self.line_has_token;
        let start = self.pos + 1;
        while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        let text = raw.strip_prefix(' ').unwrap_or(raw).trim_end().to_string();
        self.out.comments.push(Comment {
            text,
            line: self.line,
            own_line,
        });
    }

    fn ident(&mut self) {
        let start = self.pos;
        while self.pos < self.bytes.len() && is_ident_continue(self.bytes[self.pos]) {
            self.pos += 1;
        }
        // A word continuing with non-ASCII letters (`café`) is one bad identifier.
        if self.pos < self.bytes.len()
            && self.bytes[self.pos] >= 0x80
            && self.char_at(self.pos).is_alphanumeric()
        {
            while self.pos < self.bytes.len()
                && (is_ident_continue(self.bytes[self.pos])
                    || (self.bytes[self.pos] >= 0x80 && self.char_at(self.pos).is_alphanumeric()))
            {
                self.pos += self.char_at(self.pos).len_utf8().max(1);
            }
            let span = self.span(start, self.pos);
            self.error(
                "kye::non-ascii-identifier",
                format!(
                    "identifier `{}` contains non-ASCII letters",
                    &self.text[start..self.pos]
                ),
                span,
                "names may only use ASCII letters, digits and `_`",
            );
        }
        let word = &self.text[start..self.pos];
        let kind = match word {
            "assert" => TokenKind::Assert,
            "TRUE" | "true" => TokenKind::Bool(true),
            "FALSE" | "false" => TokenKind::Bool(false),
            _ if self.bytes[start].is_ascii_uppercase() => TokenKind::TypeName(word.to_string()),
            _ => TokenKind::EdgeName(word.to_string()),
        };
        self.push(kind, start);
    }

    fn number(&mut self) {
        let start = self.pos;
        let digits = |l: &mut Self| {
            while l.pos < l.bytes.len() && l.bytes[l.pos].is_ascii_digit() {
                l.pos += 1;
            }
        };
        digits(self);
        if self.peek(0) == b'.' && self.peek(1).is_ascii_digit() {
            self.pos += 1;
            digits(self);
        }
        if matches!(self.peek(0), b'e' | b'E') {
            let sign = usize::from(matches!(self.peek(1), b'+' | b'-'));
            if self.peek(1 + sign).is_ascii_digit() {
                self.pos += 1 + sign;
                digits(self);
            }
        }
        // `12abc`: one malformed token, not a number followed by a name.
        if self.pos < self.bytes.len() && is_ident_continue(self.bytes[self.pos]) {
            while self.pos < self.bytes.len() && is_ident_continue(self.bytes[self.pos]) {
                self.pos += 1;
            }
            let span = self.span(start, self.pos);
            self.error(
                "kye::invalid-number",
                format!("invalid number `{}`", &self.text[start..self.pos]),
                span,
                "names cannot start with a digit",
            );
            self.push(TokenKind::Number(0.0), start);
            return;
        }
        let text = &self.text[start..self.pos];
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => self.push(TokenKind::Number(n), start),
            _ => {
                let span = self.span(start, self.pos);
                self.error(
                    "kye::invalid-number",
                    format!("number `{text}` is out of range"),
                    span,
                    "too large for a 64-bit float",
                );
                self.push(TokenKind::Number(0.0), start);
            }
        }
    }

    fn string(&mut self) {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            if self.pos >= self.bytes.len() || self.bytes[self.pos] == b'\n' {
                let end = self.pos;
                let span = self.span(start, end);
                self.out.diagnostics.push(
                    Diagnostic::error(
                        "kye::unterminated-string",
                        "unterminated string",
                        span,
                        "this string has no closing `\"`",
                    )
                    .with_hint("strings end on the line they start on"),
                );
                self.push(TokenKind::Str(value), start);
                return;
            }
            let c = self.char_at(self.pos);
            match c {
                '"' => {
                    self.pos += 1;
                    self.push(TokenKind::Str(value), start);
                    return;
                }
                '\\' => {
                    let esc_start = self.pos;
                    self.pos += 1;
                    let e = self.char_at(self.pos);
                    if self.pos >= self.bytes.len() || e == '\n' {
                        continue; // reported as unterminated on the next turn
                    }
                    self.pos += e.len_utf8();
                    match e {
                        '"' => value.push('"'),
                        '\\' => value.push('\\'),
                        '/' => value.push('/'),
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        '0' => value.push('\0'),
                        'u' => {
                            let hex = self.text.get(self.pos..self.pos + 4).unwrap_or("");
                            match (hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                                .then(|| u32::from_str_radix(hex, 16).ok())
                                .flatten()
                                .and_then(char::from_u32)
                            {
                                Some(ch) => {
                                    self.pos += 4;
                                    value.push(ch);
                                }
                                None => {
                                    let span = self.span(esc_start, self.pos);
                                    self.error(
                                        "kye::invalid-escape",
                                        "invalid unicode escape",
                                        span,
                                        "expected `\\u` and four hex digits naming a character",
                                    );
                                }
                            }
                        }
                        other => {
                            let span = self.span(esc_start, self.pos);
                            self.out.diagnostics.push(
                                Diagnostic::error(
                                    "kye::invalid-escape",
                                    format!("unknown escape `\\{other}` in string"),
                                    span,
                                    "not a string escape",
                                )
                                .with_hint("known escapes: \\\" \\\\ \\/ \\n \\t \\r \\0 \\uXXXX"),
                            );
                        }
                    }
                }
                _ => {
                    value.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    fn single_quoted(&mut self) {
        let start = self.pos;
        self.pos += 1;
        while self.pos < self.bytes.len() && !matches!(self.bytes[self.pos], b'\'' | b'\n') {
            self.pos += self.char_at(self.pos).len_utf8().max(1);
        }
        let value = self.text[start + 1..self.pos].to_string();
        if self.peek(0) == b'\'' {
            self.pos += 1;
        }
        let span = self.span(start, self.pos);
        self.out.diagnostics.push(
            Diagnostic::error(
                "kye::single-quoted-string",
                "strings use double quotes",
                span,
                "single quotes are not string delimiters in kye",
            )
            .with_hint(format!("write \"{value}\"")),
        );
        self.push(TokenKind::Str(value), start);
    }

    fn regex(&mut self) {
        let start = self.pos;
        self.pos += 1;
        let mut pattern = String::new();
        loop {
            if self.pos >= self.bytes.len() || self.bytes[self.pos] == b'\n' {
                let span = self.span(start, self.pos);
                self.out.diagnostics.push(
                    Diagnostic::error(
                        "kye::unterminated-regex",
                        "unterminated regular expression",
                        span,
                        "this regular expression has no closing `/`",
                    )
                    .with_hint("write a `/` inside the pattern as `\\/`"),
                );
                self.push(TokenKind::Regex(pattern), start);
                return;
            }
            let c = self.char_at(self.pos);
            match c {
                '/' => {
                    self.pos += 1;
                    break;
                }
                '\\' if self.peek(1) == b'/' => {
                    pattern.push('/');
                    self.pos += 2;
                }
                '\\' if self.pos + 1 < self.bytes.len() && self.peek(1) != b'\n' => {
                    pattern.push('\\');
                    self.pos += 1;
                    let e = self.char_at(self.pos);
                    pattern.push(e);
                    self.pos += e.len_utf8();
                }
                _ => {
                    pattern.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        // Flags such as `/abc/i` are not part of the language.
        if self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_alphabetic() {
            let fstart = self.pos;
            while self.pos < self.bytes.len() && is_ident_continue(self.bytes[self.pos]) {
                self.pos += 1;
            }
            let flags = self.text[fstart..self.pos].to_string();
            let span = self.span(fstart, self.pos);
            self.out.diagnostics.push(
                Diagnostic::error(
                    "kye::regex-flags",
                    "regular expression flags are not supported",
                    span,
                    "flags after the closing `/`",
                )
                .with_hint(format!(
                    "put them inside the pattern: `/(?{flags}){pattern}/`"
                )),
            );
        }
        self.push(TokenKind::Regex(pattern), start);
    }

    fn punct(&mut self) {
        let start = self.pos;
        let b = self.bytes[self.pos];
        let next = self.peek(1);
        let (kind, len) = match (b, next) {
            (b'=', b'=') => (TokenKind::EqEq, 2),
            (b'!', b'=') => (TokenKind::NotEq, 2),
            (b'<', b'=') => (TokenKind::Le, 2),
            (b'>', b'=') => (TokenKind::Ge, 2),
            (b'=', _) => (TokenKind::Eq, 1),
            (b'(', _) => (TokenKind::LParen, 1),
            (b')', _) => (TokenKind::RParen, 1),
            (b'{', _) => (TokenKind::LBrace, 1),
            (b'}', _) => (TokenKind::RBrace, 1),
            (b'[', _) => (TokenKind::LBracket, 1),
            (b']', _) => (TokenKind::RBracket, 1),
            (b',', _) => (TokenKind::Comma, 1),
            (b':', _) => (TokenKind::Colon, 1),
            (b'.', _) => (TokenKind::Dot, 1),
            (b'?', _) => (TokenKind::Question, 1),
            (b'!', _) => (TokenKind::Bang, 1),
            (b'+', _) => (TokenKind::Plus, 1),
            (b'*', _) => (TokenKind::Star, 1),
            (b'-', _) => (TokenKind::Minus, 1),
            (b'/', _) => (TokenKind::Slash, 1),
            (b'%', _) => (TokenKind::Percent, 1),
            (b'|', _) => (TokenKind::Pipe, 1),
            (b'&', _) => (TokenKind::Amp, 1),
            (b'^', _) => (TokenKind::Caret, 1),
            (b'~', _) => (TokenKind::Tilde, 1),
            (b'<', _) => (TokenKind::Lt, 1),
            (b'>', _) => (TokenKind::Gt, 1),
            _ => {
                self.pos += 1;
                let span = self.span(start, self.pos);
                let shown = if b.is_ascii_graphic() {
                    format!("`{}`", b as char)
                } else {
                    format!("byte 0x{b:02x}")
                };
                self.error(
                    "kye::unexpected-character",
                    format!("unexpected character {shown}"),
                    span,
                    "not part of the kye language",
                );
                return;
            }
        };
        self.pos += len;
        self.push(kind, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        lex(FileId(0), text)
            .tokens
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn slash_is_regex_at_operand_start_and_division_after_an_operand() {
        assert_eq!(
            kinds("x: /a+/"),
            vec![
                TokenKind::EdgeName("x".into()),
                TokenKind::Colon,
                TokenKind::Regex("a+".into()),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("a / b"),
            vec![
                TokenKind::EdgeName("a".into()),
                TokenKind::Slash,
                TokenKind::EdgeName("b".into()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn strings_resolve_escapes_and_stop_at_the_line_end() {
        assert_eq!(
            kinds(r#""a\"b\u0041""#),
            vec![TokenKind::Str("a\"bA".into()), TokenKind::Eof]
        );
        let lexed = lex(FileId(0), "\"abc\nx");
        assert_eq!(lexed.diagnostics[0].code, "kye::unterminated-string");
        assert_eq!(lexed.tokens[1].kind, TokenKind::EdgeName("x".into()));
    }

    #[test]
    fn non_ascii_identifiers_are_one_error() {
        let lexed = lex(FileId(0), "café: String");
        assert_eq!(lexed.diagnostics.len(), 1);
        assert_eq!(lexed.diagnostics[0].code, "kye::non-ascii-identifier");
        assert_eq!(lexed.diagnostics[0].primary.span.end, 5);
    }

    #[test]
    fn comments_know_whether_they_stand_alone() {
        let lexed = lex(FileId(0), "# doc\nx # trailing\n");
        assert!(lexed.comments[0].own_line);
        assert_eq!(lexed.comments[0].text, "doc");
        assert!(!lexed.comments[1].own_line);
    }
}
