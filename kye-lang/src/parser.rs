//! The parser: tokens to an [`crate::ast::File`], with error recovery.
//!
//! Grammar (newlines are not significant; commas between statements are optional):
//!
//! ```text
//! file        = { model | alias | "," }
//! model       = TYPE { index } "{" { edge | assert | "," } "}"
//! index       = "(" [ index_item { "," index_item } [","] ] ")"
//! index_item  = EDGE [ ":" type ]
//! alias       = TYPE ":" type
//! edge        = EDGE [ STRING ] [ card ] [ STRING ] ":" type [ card ]
//! card        = "?" | "!" | "*" | "+"
//! assert      = "assert" expr
//! type        = t_and { ("|" | "^") t_and }           (| loosest, then ^, then &)
//! t_and       = t_not { "&" t_not }
//! t_not       = "!" t_not | t_atom
//! t_atom      = TYPE | STRING | ["-"] NUMBER | BOOLEAN | REGEX | "(" type ")"
//! expr        = ordinary precedence, loosest first: | ^ & (== != < <= > >=) (+ -) (* / %) (! -) atom
//! atom        = EDGE | STRING | NUMBER | BOOLEAN | REGEX | "(" expr ")"
//! ```
//!
//! On a syntax error the parser reports it, skips to the start of the next statement (a
//! statement-starting token at the beginning of a line, a `,`, or the closing `}`), and goes on,
//! so one run reports every error of a file. Only the first error of a statement is reported,
//! which keeps one mistake from producing a cascade.
//!
//! Recursion is bounded: more than [`MAX_NESTING`] nested parentheses or unary operators, or an
//! expression tree higher than [`MAX_DEPTH`], is an error rather than a stack overflow.

use std::collections::HashMap;

use crate::ast::{
    AliasDef, AssertDef, CardMark, EdgeDef, Expr, ExprKind, File, Ident, IndexDef, IndexItem, Item,
    Member, ModelDef,
};
use crate::diagnostic::did_you_mean;
use crate::diagnostic::Diagnostic;
use crate::lexer::{lex, Comment, Token, TokenKind};
use crate::schema::{BinaryOp, Cardinality, UnaryOp};
use crate::span::{FileId, Span};

/// Most nested parentheses / unary operators accepted in one expression.
pub const MAX_NESTING: u32 = 64;
/// Highest expression tree accepted (chains of `|`, `&`, `^` are balanced, so this only limits
/// long arithmetic or comparison chains and deep nesting).
pub const MAX_DEPTH: u32 = 200;

/// The result of parsing one file.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The syntax tree (parts that failed to parse are left out or marked as errors).
    pub file: File,
    /// Lexical and syntax errors, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses one file. Never panics; every problem is a diagnostic.
pub fn parse(file: FileId, text: &str) -> Parsed {
    let lexed = lex(file, text);
    let mut docs: HashMap<u32, String> = HashMap::new();
    for Comment {
        text,
        line,
        own_line,
    } in lexed.comments
    {
        if own_line {
            docs.insert(line, text);
        }
    }
    let mut p = Parser {
        toks: lexed.tokens,
        pos: 0,
        docs,
        diags: lexed.diagnostics,
        stmt_errored: false,
        nesting: 0,
    };
    let file = p.file();
    let mut diagnostics = p.diags;
    diagnostics.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
    Parsed { file, diagnostics }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    docs: HashMap<u32, String>,
    diags: Vec<Diagnostic>,
    /// An error was reported in the current statement: stay quiet until the next one.
    stmt_errored: bool,
    nesting: u32,
}

fn card_of(kind: &TokenKind) -> Option<Cardinality> {
    match kind {
        TokenKind::Question => Some(Cardinality::Optional),
        TokenKind::Bang => Some(Cardinality::One),
        TokenKind::Star => Some(Cardinality::Many),
        TokenKind::Plus => Some(Cardinality::AtLeastOne),
        _ => None,
    }
}

const BUILTINS: [&str; 3] = ["String", "Number", "Boolean"];

impl Parser {
    // ---- token access -------------------------------------------------------------------

    fn tok(&self) -> &Token {
        // The token list always ends with Eof and `pos` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn kind(&self) -> &TokenKind {
        &self.tok().kind
    }

    fn peek_kind(&self, n: usize) -> &TokenKind {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].kind
    }

    fn span(&self) -> Span {
        self.tok().span
    }

    fn prev_span(&self) -> Span {
        if self.pos == 0 {
            self.span()
        } else {
            self.toks[(self.pos - 1).min(self.toks.len() - 1)].span
        }
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.kind() == kind
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.at(kind) {
            self.bump();
            true
        } else {
            false
        }
    }

    // ---- diagnostics --------------------------------------------------------------------

    /// Reports an error unless one was already reported for this statement.
    fn report(&mut self, d: Diagnostic) {
        if !self.stmt_errored {
            self.diags.push(d);
        }
        self.stmt_errored = true;
    }

    fn unexpected(&mut self, expected: &str, label: &str, hint: Option<String>) {
        let t = self.tok().clone();
        let mut d = Diagnostic::error(
            "kye::syntax",
            format!("expected {expected}, found {}", t.kind.describe()),
            t.span,
            label,
        );
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        self.report(d);
    }

    /// The `#` lines directly above the current token, when it starts its line.
    fn doc_for(&self) -> Option<String> {
        if !self.tok().newline_before {
            return None;
        }
        let line = self.tok().line;
        let mut lines = Vec::new();
        let mut l = line;
        while let Some(prev) = l.checked_sub(1) {
            match self.docs.get(&prev) {
                Some(text) => lines.push(text.as_str()),
                None => break,
            }
            l = prev;
        }
        if lines.is_empty() {
            return None;
        }
        lines.reverse();
        Some(lines.join("\n"))
    }

    // ---- recovery -----------------------------------------------------------------------

    fn starts_statement(t: &Token) -> bool {
        t.newline_before
            && matches!(
                t.kind,
                TokenKind::EdgeName(_) | TokenKind::TypeName(_) | TokenKind::Assert
            )
    }

    /// Skips to the next statement inside a block: a `,` or `}` at this level, or a
    /// statement-starting token at the start of a line.
    fn recover_stmt(&mut self) {
        let mut depth = 0u32;
        let mut first = true;
        loop {
            let t = self.tok();
            match t.kind {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::RBrace => depth -= 1,
                TokenKind::Comma if depth == 0 => return,
                TokenKind::LBrace => depth += 1,
                _ if depth == 0 && !first && Self::starts_statement(t) => return,
                _ => {}
            }
            first = false;
            self.bump();
        }
    }

    /// Skips to the next top-level item: a type name at the start of a line, outside braces.
    fn recover_top(&mut self) {
        let mut depth = 0u32;
        let mut first = true;
        loop {
            let t = self.tok();
            match t.kind {
                TokenKind::Eof => return,
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => depth = depth.saturating_sub(1),
                TokenKind::TypeName(_) if depth == 0 && !first && t.newline_before => return,
                _ => {}
            }
            first = false;
            self.bump();
        }
    }

    /// True when the current token may follow a complete statement inside a block.
    fn at_statement_end(&self) -> bool {
        matches!(
            self.kind(),
            TokenKind::Comma
                | TokenKind::RBrace
                | TokenKind::Eof
                | TokenKind::EdgeName(_)
                | TokenKind::Assert
        ) || Self::starts_statement(self.tok())
    }

    // ---- items --------------------------------------------------------------------------

    fn file(&mut self) -> File {
        let mut items = Vec::new();
        loop {
            self.stmt_errored = false;
            let t = self.tok().clone();
            match &t.kind {
                TokenKind::Eof => break,
                TokenKind::Comma => {
                    self.bump();
                }
                TokenKind::TypeName(name) => match self.peek_kind(1) {
                    TokenKind::Colon => items.push(Item::Alias(self.alias())),
                    TokenKind::LParen | TokenKind::LBrace => items.push(Item::Model(self.model())),
                    _ => {
                        self.bump();
                        let name = name.clone();
                        self.unexpected(
                            &format!("`(`, `{{` or `:` after `{name}`"),
                            "expected a model or a type alias",
                            Some(format!(
                                "a model is written `{name}(id) {{ id: Number }}`, an alias `{name}: String`"
                            )),
                        );
                        self.recover_top();
                    }
                },
                TokenKind::EdgeName(name) => {
                    let hint = if matches!(self.peek_kind(1), TokenKind::LParen | TokenKind::LBrace)
                    {
                        format!(
                            "model names start with an uppercase letter: `{}`",
                            capitalize(name)
                        )
                    } else {
                        "declare edges inside a model: `Model(id) { id: Number }`".to_string()
                    };
                    let d = Diagnostic::error(
                        "kye::syntax",
                        format!("expected a model or a type alias, found edge name `{name}`"),
                        t.span,
                        "edges belong inside a model",
                    )
                    .with_hint(hint);
                    self.report(d);
                    self.recover_top();
                }
                TokenKind::Assert => {
                    let d = Diagnostic::error(
                        "kye::syntax",
                        "`assert` outside a model",
                        t.span,
                        "assertions belong inside a model body",
                    );
                    self.report(d);
                    self.recover_top();
                }
                TokenKind::RBrace => {
                    self.report(Diagnostic::error(
                        "kye::syntax",
                        "unmatched `}`",
                        t.span,
                        "no `{` opens this",
                    ));
                    self.bump();
                }
                _ => {
                    self.unexpected(
                        "a model or a type alias",
                        "a file holds models and type aliases",
                        None,
                    );
                    self.recover_top();
                }
            }
        }
        File { items }
    }

    fn ident(&mut self) -> Ident {
        let t = self.bump();
        let name = match t.kind {
            TokenKind::TypeName(n) | TokenKind::EdgeName(n) => n,
            _ => String::new(),
        };
        Ident { name, span: t.span }
    }

    fn alias(&mut self) -> AliasDef {
        let doc = self.doc_for();
        let name = self.ident();
        self.bump(); // `:`
        let ty = self.type_expr();
        if let Some(c) = card_of(self.kind()) {
            let span = self.span();
            self.bump();
            let d = Diagnostic::error(
                "kye::alias-cardinality",
                format!(
                    "a type alias cannot have a cardinality (`{}`)",
                    card_marker(c)
                ),
                span,
                "cardinality belongs on an edge",
            )
            .with_hint(format!(
                "write it where the alias is used: `edge{}: {}`",
                card_marker(c),
                name.name
            ));
            self.report(d);
        }
        if !ty.has_error()
            && !matches!(
                self.kind(),
                TokenKind::Eof
                    | TokenKind::Comma
                    | TokenKind::TypeName(_)
                    | TokenKind::EdgeName(_)
                    | TokenKind::Assert
                    | TokenKind::RBrace
            )
        {
            self.unexpected("the end of the alias", "unexpected here", None);
            self.recover_top();
        }
        let span = name.span.to(self.prev_span());
        AliasDef {
            name,
            ty,
            doc,
            span,
        }
    }

    fn model(&mut self) -> ModelDef {
        let doc = self.doc_for();
        let name = self.ident();
        let mut indexes = Vec::new();
        let mut recovered = false;
        while self.at(&TokenKind::LParen) {
            match self.index() {
                Some(ix) => indexes.push(ix),
                None => recovered = true,
            }
        }
        let mut members = Vec::new();
        let mut open_brace = None;
        if self.at(&TokenKind::LBrace) {
            let open = self.bump().span;
            open_brace = Some(open);
            members = self.block(&name, open);
        } else {
            recovered = true;
            let hint = if indexes.is_empty() && !self.stmt_errored {
                Some(format!(
                    "a model needs a body: `{}(id) {{ id: Number }}`",
                    name.name
                ))
            } else {
                None
            };
            self.unexpected("`{` to start the model body", "expected `{`", hint);
            // If the body is still on its way (e.g. `User(id) x {`), resume there.
            let mut i = self.pos;
            while i < self.toks.len() {
                let t = &self.toks[i];
                if t.kind == TokenKind::LBrace {
                    self.pos = i;
                    let open = self.bump().span;
                    open_brace = Some(open);
                    members = self.block(&name, open);
                    break;
                }
                if t.kind == TokenKind::RBrace {
                    self.pos = i + 1;
                    break;
                }
                if t.kind == TokenKind::Eof || Self::starts_statement(t) {
                    // The next item starts here (the header had no body at all).
                    self.pos = i;
                    break;
                }
                i += 1;
            }
        }
        let span = name.span.to(self.prev_span());
        ModelDef {
            name,
            indexes,
            members,
            doc,
            span,
            open_brace,
            recovered,
        }
    }

    /// Parses `( ... )`. Returns `None` after reporting an error (and skipping past the group).
    fn index(&mut self) -> Option<IndexDef> {
        let open = self.bump().span;
        let mut items = Vec::new();
        loop {
            match self.kind().clone() {
                TokenKind::RParen => {
                    let close = self.bump().span;
                    return Some(IndexDef {
                        items,
                        span: open.to(close),
                    });
                }
                TokenKind::EdgeName(_) | TokenKind::TypeName(_) => {
                    if let TokenKind::TypeName(n) = self.kind().clone() {
                        let d = Diagnostic::error(
                            "kye::syntax",
                            format!("expected an edge name, found type name `{n}`"),
                            self.span(),
                            "indexes list edges of the model",
                        )
                        .with_hint(format!(
                            "edge names start with a lowercase letter or `_`: `{}`",
                            decapitalize(&n)
                        ));
                        self.report(d);
                        self.skip_group();
                        return None;
                    }
                    let name = self.ident();
                    let ty = if self.eat(&TokenKind::Colon) {
                        let t = self.type_expr();
                        if t.has_error() {
                            self.skip_group();
                            return None;
                        }
                        Some(t)
                    } else {
                        None
                    };
                    items.push(IndexItem { name, ty });
                    if !self.eat(&TokenKind::Comma) && !self.at(&TokenKind::RParen) {
                        self.unexpected("`,` or `)`", "expected `,` or `)`", None);
                        self.skip_group();
                        return None;
                    }
                }
                _ => {
                    self.unexpected(
                        "an edge name or `)`",
                        "expected an edge name",
                        Some("an index lists edges: `(id)` or `(year, month, day)`".into()),
                    );
                    self.skip_group();
                    return None;
                }
            }
        }
    }

    /// After an error inside `( ... )`: skip past the closing `)`, stopping before a `{` or `}`.
    fn skip_group(&mut self) {
        loop {
            match self.kind() {
                TokenKind::RParen => {
                    self.bump();
                    return;
                }
                TokenKind::LBrace | TokenKind::RBrace | TokenKind::Eof => return,
                _ => {
                    self.bump();
                }
            }
        }
    }

    fn block(&mut self, model: &Ident, open: Span) -> Vec<Member> {
        let mut members = Vec::new();
        // The previous statement had an error: junk right after it (e.g. past a `,` the
        // recovery stopped at) is part of the same mistake and is skipped quietly.
        let mut prev_errored = false;
        loop {
            self.stmt_errored = false;
            let t = self.tok().clone();
            match &t.kind {
                TokenKind::RBrace => {
                    self.bump();
                    return members;
                }
                TokenKind::Comma => {
                    self.bump();
                    self.stmt_errored = prev_errored;
                }
                TokenKind::Eof => {
                    // Point just after the last token rather than at a blank last line.
                    let end = self.prev_span();
                    let at = Span {
                        start: end.end,
                        ..end
                    };
                    let d = Diagnostic::error(
                        "kye::unclosed-block",
                        format!("model `{}` is missing its closing `}}`", model.name),
                        at,
                        "expected `}`",
                    )
                    .with_secondary(open, "the body opens here");
                    self.report(d);
                    return members;
                }
                TokenKind::EdgeName(_) => members.push(Member::Edge(self.edge(false))),
                TokenKind::Assert => members.push(Member::Assert(self.assert())),
                TokenKind::TypeName(_)
                    if t.newline_before
                        && matches!(self.peek_kind(1), TokenKind::LParen | TokenKind::LBrace) =>
                {
                    // Most likely the previous model lacks its `}`: end it here.
                    let d = Diagnostic::error(
                        "kye::unclosed-block",
                        format!("model `{}` is missing its closing `}}`", model.name),
                        t.span,
                        "a new model starts here",
                    )
                    .with_secondary(open, "the body opens here")
                    .with_hint("models cannot be nested; close the body with `}`");
                    self.report(d);
                    return members;
                }
                TokenKind::TypeName(_)
                    if matches!(
                        self.peek_kind(1),
                        TokenKind::Colon
                            | TokenKind::Str(_)
                            | TokenKind::Question
                            | TokenKind::Bang
                            | TokenKind::Star
                            | TokenKind::Plus
                    ) =>
                {
                    members.push(Member::Edge(self.edge(true)))
                }
                _ => {
                    if prev_errored {
                        self.stmt_errored = true;
                    } else {
                        self.unexpected(
                            "an edge or `assert`",
                            "expected an edge declaration",
                            Some(
                                "a model body holds edges (`name: String`) and `assert` statements"
                                    .into(),
                            ),
                        );
                    }
                    self.recover_stmt();
                }
            }
            prev_errored = self.stmt_errored;
        }
    }

    fn card_mark(&mut self) -> Option<CardMark> {
        let c = card_of(self.kind())?;
        let span = self.bump().span;
        Some(CardMark {
            cardinality: c,
            span,
        })
    }

    fn edge(&mut self, capitalised: bool) -> EdgeDef {
        let doc = self.doc_for();
        let name = self.ident();
        if capitalised {
            let d = Diagnostic::error(
                "kye::edge-name-case",
                format!("edge name `{}` starts with an uppercase letter", name.name),
                name.span,
                "capitalised names are types",
            )
            .with_hint(format!(
                "edge names start with a lowercase letter or `_`: `{}`",
                decapitalize(&name.name)
            ));
            self.report(d);
        }
        let mut title = None;
        let mut name_card = None;
        // Title and marker in either order: `id "User Id"?` or `id? "User Id"`.
        for _ in 0..2 {
            if let TokenKind::Str(s) = self.kind().clone() {
                if title.is_none() {
                    let span = self.bump().span;
                    title = Some((s, span));
                }
            }
            if name_card.is_none() {
                name_card = self.card_mark();
            }
        }
        let error_edge = |p: &mut Parser, name: Ident, title, name_card, doc| {
            let span = name.span.to(p.prev_span());
            EdgeDef {
                ty: Expr::leaf(ExprKind::Error, span),
                name,
                title,
                name_card,
                type_card: None,
                doc,
                span,
            }
        };
        match self.kind() {
            TokenKind::Colon => {
                self.bump();
            }
            TokenKind::LParen | TokenKind::LBrace => {
                let what = if self.at(&TokenKind::LParen) {
                    "edges with parameters"
                } else {
                    "computed edges (`edge { ... }`)"
                };
                let d = Diagnostic::error(
                    "kye::unsupported",
                    format!("{what} are not supported"),
                    self.span(),
                    "not supported by this version of kye",
                )
                .with_hint(format!("declare a typed edge: `{}: String`", name.name));
                self.report(d);
                self.recover_stmt();
                return error_edge(self, name, title, name_card, doc);
            }
            TokenKind::TypeName(ty) => {
                // `weight_kg Number`: only the colon is missing. Say so, and read the type as
                // if it were there, so the rest of the model is still checked.
                let ty = ty.clone();
                let nm = name.name.clone();
                let hint = format!("add the missing `:`: `{nm}: {ty}`");
                self.unexpected(
                    &format!("`:` between `{nm}` and its type"),
                    "expected `:` before the type",
                    Some(hint),
                );
            }
            _ => {
                let nm = name.name.clone();
                self.unexpected(
                    &format!("`:` and a type after `{nm}`"),
                    "expected `:`",
                    Some(format!("declare the edge's type: `{nm}: String`")),
                );
                self.recover_stmt();
                return error_edge(self, name, title, name_card, doc);
            }
        }
        let ty = self.type_expr();
        let type_card = if ty.has_error() {
            None
        } else {
            self.card_mark()
        };
        if ty.has_error() {
            if !self.at_statement_end() {
                self.recover_stmt();
            }
        } else if !self.at_statement_end() {
            let glued = self.prev_span().end == self.span().start;
            let hint = match self.kind() {
                TokenKind::Lt if glued && matches!(ty.kind, ExprKind::Type(_)) => Some(
                    "type formats such as `Number<3>` (from the original kye) are not supported; put rules about values in an `assert`".to_string(),
                ),
                TokenKind::EqEq
                | TokenKind::NotEq
                | TokenKind::Lt
                | TokenKind::Le
                | TokenKind::Gt
                | TokenKind::Ge
                | TokenKind::Minus
                | TokenKind::Slash
                | TokenKind::Percent => Some(format!(
                    "rules about values go in an assertion: `assert {} > 0`",
                    name.name
                )),
                TokenKind::Eq => Some("write the type after `:`, not `=`".into()),
                TokenKind::LBracket | TokenKind::Dot => {
                    Some("filters and paths in types are not supported".into())
                }
                _ if type_card.is_some() && !self.tok().newline_before => Some(format!(
                    "`{}` after a type is a cardinality marker; types cannot contain arithmetic, put rules about values in an `assert`",
                    type_card.map(|c| card_marker(c.cardinality)).unwrap_or("")
                )),
                _ => None,
            };
            self.unexpected(
                "the end of the edge declaration",
                "unexpected after the edge's type",
                hint,
            );
            self.recover_stmt();
        }
        let span = name.span.to(self.prev_span());
        EdgeDef {
            name,
            title,
            name_card,
            ty,
            type_card,
            doc,
            span,
        }
    }

    fn assert(&mut self) -> AssertDef {
        let kw = self.bump().span;
        let expr = self.expr();
        if !expr.has_error() && !self.at_statement_end() {
            let hint = match self.kind() {
                TokenKind::Eq => Some("compare with `==`".to_string()),
                _ => None,
            };
            self.unexpected("the end of the assertion", "unexpected here", hint);
            self.recover_stmt();
            // The expression is incomplete; checking it would only add a second error.
            return AssertDef {
                span: kw.to(expr.span),
                expr: Expr::leaf(ExprKind::Error, expr.span),
            };
        } else if expr.has_error() && !self.at_statement_end() {
            self.recover_stmt();
        }
        AssertDef {
            span: kw.to(expr.span),
            expr,
        }
    }

    // ---- expressions --------------------------------------------------------------------

    fn error_expr(&self) -> Expr {
        Expr::leaf(ExprKind::Error, self.span())
    }

    fn binary(&mut self, op: BinaryOp, a: Expr, b: Expr) -> Expr {
        let span = a.span.to(b.span);
        let depth = 1 + a.depth.max(b.depth);
        if a.has_error_leaf() || b.has_error_leaf() {
            return Expr::leaf(ExprKind::Error, span);
        }
        if depth > MAX_DEPTH {
            self.report(
                Diagnostic::error(
                    "kye::too-complex",
                    format!("expression is too deeply nested (more than {MAX_DEPTH} levels)"),
                    span,
                    "too deep",
                )
                .with_hint("split it into several assertions or aliases"),
            );
            return Expr::leaf(ExprKind::Error, span);
        }
        Expr {
            kind: ExprKind::Binary(op, Box::new(a), Box::new(b)),
            span,
            depth,
        }
    }

    /// Builds a balanced tree over an associative chain so its height stays logarithmic.
    fn balanced(&mut self, op: BinaryOp, mut operands: Vec<Expr>) -> Expr {
        while operands.len() > 1 {
            let mut next = Vec::with_capacity(operands.len().div_ceil(2));
            let mut it = operands.into_iter();
            while let Some(a) = it.next() {
                match it.next() {
                    Some(b) => next.push(self.binary(op, a, b)),
                    None => next.push(a),
                }
            }
            operands = next;
        }
        operands
            .pop()
            .unwrap_or_else(|| Expr::leaf(ExprKind::Error, Span::default()))
    }

    fn enter(&mut self) -> bool {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            self.report(
                Diagnostic::error(
                    "kye::too-complex",
                    format!("expression nests more than {MAX_NESTING} levels deep"),
                    self.span(),
                    "too deep",
                )
                .with_hint("split it into several assertions or aliases"),
            );
            return false;
        }
        true
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    /// A chain of one associative operator over operands parsed by `next`.
    fn chain(&mut self, tok: TokenKind, op: BinaryOp, next: fn(&mut Parser) -> Expr) -> Expr {
        let first = next(self);
        if !self.at(&tok) {
            return first;
        }
        let mut operands = vec![first];
        while self.at(&tok) {
            self.bump();
            let e = next(self);
            let bad = e.has_error_leaf();
            operands.push(e);
            if bad {
                break;
            }
        }
        self.balanced(op, operands)
    }

    // Type expressions.

    fn type_expr(&mut self) -> Expr {
        self.chain(TokenKind::Pipe, BinaryOp::Or, Parser::type_xor)
    }

    fn type_xor(&mut self) -> Expr {
        self.chain(TokenKind::Caret, BinaryOp::Xor, Parser::type_and)
    }

    fn type_and(&mut self) -> Expr {
        self.chain(TokenKind::Amp, BinaryOp::And, Parser::type_not)
    }

    fn type_not(&mut self) -> Expr {
        if self.at(&TokenKind::Bang) {
            let start = self.bump().span;
            if !self.enter() {
                self.leave();
                return self.error_expr();
            }
            let inner = self.type_not();
            self.leave();
            return self.unary(UnaryOp::Not, start, inner);
        }
        self.type_atom()
    }

    fn unary(&mut self, op: UnaryOp, start: Span, inner: Expr) -> Expr {
        let span = start.to(inner.span);
        if inner.has_error_leaf() {
            return Expr::leaf(ExprKind::Error, span);
        }
        Expr {
            depth: inner.depth + 1,
            kind: ExprKind::Unary(op, Box::new(inner)),
            span,
        }
    }

    fn type_atom(&mut self) -> Expr {
        let t = self.tok().clone();
        match t.kind {
            TokenKind::TypeName(n) => {
                self.bump();
                Expr::leaf(ExprKind::Type(n), t.span)
            }
            TokenKind::Str(s) => {
                self.bump();
                Expr::leaf(ExprKind::Str(s), t.span)
            }
            TokenKind::Number(n) => {
                self.bump();
                Expr::leaf(ExprKind::Number(n), t.span)
            }
            TokenKind::Minus if matches!(self.peek_kind(1), TokenKind::Number(_)) => {
                self.bump();
                let num = self.bump();
                let n = match num.kind {
                    TokenKind::Number(n) => -n,
                    _ => 0.0,
                };
                Expr::leaf(ExprKind::Number(n), t.span.to(num.span))
            }
            TokenKind::Bool(b) => {
                self.bump();
                Expr::leaf(ExprKind::Bool(b), t.span)
            }
            TokenKind::Regex(r) => {
                self.bump();
                Expr::leaf(ExprKind::Regex(r), t.span)
            }
            TokenKind::LParen => {
                self.bump();
                if !self.enter() {
                    self.leave();
                    return self.error_expr();
                }
                let inner = self.type_expr();
                self.leave();
                if inner.has_error_leaf() {
                    return inner;
                }
                if !self.at(&TokenKind::RParen) {
                    self.unexpected("`)`", "expected `)`", None);
                    return Expr::leaf(ExprKind::Error, t.span.to(inner.span));
                }
                let close = self.bump().span;
                Expr {
                    span: t.span.to(close),
                    ..inner
                }
            }
            TokenKind::EdgeName(_) if self.at_edge_declaration() => {
                let prev = self.prev_span();
                let d = Diagnostic::error(
                    "kye::syntax",
                    "missing type",
                    prev,
                    "expected a type after this",
                )
                .with_secondary(t.span, "the next edge declaration starts here");
                self.report(d);
                Expr::leaf(ExprKind::Error, t.span)
            }
            TokenKind::EdgeName(n) => {
                let suggestion = did_you_mean(&n, BUILTINS.iter().copied());
                let hint = match suggestion {
                    Some(s) => {
                        format!("did you mean `{s}`? Type names start with an uppercase letter")
                    }
                    None => "type names start with an uppercase letter".to_string(),
                };
                let d = Diagnostic::error(
                    "kye::expected-type",
                    format!("expected a type, found edge name `{n}`"),
                    t.span,
                    "not a type",
                )
                .with_hint(hint);
                self.report(d);
                self.bump();
                Expr::leaf(ExprKind::Error, t.span)
            }
            _ => {
                self.unexpected(
                    "a type",
                    "expected a type",
                    Some(
                        "a type is `String`, `Number`, `Boolean`, a model or alias name, a literal such as `\"A\"`, or a regex `/.../`"
                            .into(),
                    ),
                );
                Expr::leaf(ExprKind::Error, t.span)
            }
        }
    }

    // Value expressions (assertions), ordinary precedence.

    fn expr(&mut self) -> Expr {
        self.chain(TokenKind::Pipe, BinaryOp::Or, Parser::xor_expr)
    }

    fn xor_expr(&mut self) -> Expr {
        self.chain(TokenKind::Caret, BinaryOp::Xor, Parser::and_expr)
    }

    fn and_expr(&mut self) -> Expr {
        self.chain(TokenKind::Amp, BinaryOp::And, Parser::cmp_expr)
    }

    fn cmp_op(&self) -> Option<BinaryOp> {
        Some(match self.kind() {
            TokenKind::EqEq => BinaryOp::Eq,
            TokenKind::NotEq => BinaryOp::Ne,
            TokenKind::Lt => BinaryOp::Lt,
            TokenKind::Le => BinaryOp::Le,
            TokenKind::Gt => BinaryOp::Gt,
            TokenKind::Ge => BinaryOp::Ge,
            _ => return None,
        })
    }

    fn cmp_expr(&mut self) -> Expr {
        let lhs = self.add_expr();
        let Some(op) = self.cmp_op() else {
            return lhs;
        };
        if lhs.has_error_leaf() {
            return lhs;
        }
        self.bump();
        let rhs = self.add_expr();
        let e = self.binary(op, lhs, rhs);
        if self.cmp_op().is_some() && !e.has_error_leaf() {
            let d = Diagnostic::error(
                "kye::chained-comparison",
                "comparison operators cannot be chained",
                self.span(),
                "second comparison",
            )
            .with_hint("combine two comparisons with `&`: `0 < x & x < 10`");
            self.report(d);
            return Expr::leaf(ExprKind::Error, e.span);
        }
        e
    }

    fn add_expr(&mut self) -> Expr {
        let mut lhs = self.mul_expr();
        loop {
            let op = match self.kind() {
                TokenKind::Plus => BinaryOp::Add,
                TokenKind::Minus => BinaryOp::Sub,
                _ => return lhs,
            };
            if lhs.has_error_leaf() {
                return lhs;
            }
            self.bump();
            let rhs = self.mul_expr();
            lhs = self.binary(op, lhs, rhs);
        }
    }

    fn mul_expr(&mut self) -> Expr {
        let mut lhs = self.unary_expr();
        loop {
            let op = match self.kind() {
                TokenKind::Star => BinaryOp::Mul,
                TokenKind::Slash => BinaryOp::Div,
                TokenKind::Percent => BinaryOp::Mod,
                _ => return lhs,
            };
            if lhs.has_error_leaf() {
                return lhs;
            }
            self.bump();
            let rhs = self.unary_expr();
            lhs = self.binary(op, lhs, rhs);
        }
    }

    fn unary_expr(&mut self) -> Expr {
        let op = match self.kind() {
            TokenKind::Bang => UnaryOp::Not,
            TokenKind::Minus => UnaryOp::Neg,
            TokenKind::Tilde => {
                let d = Diagnostic::error(
                    "kye::unsupported",
                    "the `~` operator is not supported",
                    self.span(),
                    "not supported",
                )
                .with_hint("use `!` for logical not");
                self.report(d);
                let e = self.error_expr();
                self.bump();
                return e;
            }
            _ => return self.atom(),
        };
        let start = self.bump().span;
        if !self.enter() {
            self.leave();
            return self.error_expr();
        }
        let inner = self.unary_expr();
        self.leave();
        // Fold `-3` into a literal.
        if let (UnaryOp::Neg, ExprKind::Number(n)) = (op, &inner.kind) {
            return Expr::leaf(ExprKind::Number(-n), start.to(inner.span));
        }
        self.unary(op, start, inner)
    }

    /// True when an edge declaration (`name:`, `name?:`, `name "Title":`) starts here: such a
    /// name is the next statement, never an operand.
    fn at_edge_declaration(&self) -> bool {
        if !matches!(self.kind(), TokenKind::EdgeName(_)) {
            return false;
        }
        let mut i = 1;
        if matches!(self.peek_kind(i), TokenKind::Str(_)) {
            i += 1;
        }
        if card_of(self.peek_kind(i)).is_some() {
            i += 1;
        }
        matches!(self.peek_kind(i), TokenKind::Colon)
    }

    fn atom(&mut self) -> Expr {
        if self.at_edge_declaration() {
            let prev = self.prev_span();
            let d = Diagnostic::error(
                "kye::syntax",
                "incomplete expression",
                prev,
                "expected an expression after this",
            )
            .with_secondary(self.span(), "the next edge declaration starts here");
            self.report(d);
            return Expr::leaf(ExprKind::Error, self.span());
        }
        let t = self.tok().clone();
        let kind = match t.kind {
            TokenKind::EdgeName(n) => ExprKind::Edge(n),
            TokenKind::TypeName(n) => ExprKind::Type(n),
            TokenKind::Str(s) => ExprKind::Str(s),
            TokenKind::Number(n) => ExprKind::Number(n),
            TokenKind::Bool(b) => ExprKind::Bool(b),
            TokenKind::Regex(r) => ExprKind::Regex(r),
            TokenKind::LParen => {
                self.bump();
                if !self.enter() {
                    self.leave();
                    return self.error_expr();
                }
                let inner = self.expr();
                self.leave();
                if inner.has_error_leaf() {
                    return inner;
                }
                if !self.at(&TokenKind::RParen) {
                    self.unexpected("`)`", "expected `)`", None);
                    return Expr::leaf(ExprKind::Error, t.span.to(inner.span));
                }
                let close = self.bump().span;
                return Expr {
                    span: t.span.to(close),
                    ..inner
                };
            }
            _ => {
                self.unexpected(
                    "an expression",
                    "expected an edge name, a literal or `(`",
                    None,
                );
                return Expr::leaf(ExprKind::Error, t.span);
            }
        };
        self.bump();
        let e = Expr::leaf(kind, t.span);
        // Paths, filters and calls of the original grammar are not supported.
        if matches!(self.kind(), TokenKind::Dot | TokenKind::LBracket)
            || (self.at(&TokenKind::LParen) && !self.tok().newline_before)
        {
            let what = match self.kind() {
                TokenKind::Dot => "paths (`a.b`)",
                TokenKind::LBracket => "filters (`a[...]`)",
                _ => "function calls",
            };
            let d = Diagnostic::error(
                "kye::unsupported",
                format!("{what} are not supported in expressions"),
                self.span(),
                "not supported",
            );
            self.report(d);
            return Expr::leaf(ExprKind::Error, t.span);
        }
        e
    }
}

impl Expr {
    /// Like [`Expr::has_error`] but only looks at the root (constant time): the parser never
    /// builds a node over an erroneous child, so the root tells.
    fn has_error_leaf(&self) -> bool {
        matches!(self.kind, ExprKind::Error)
    }
}

fn card_marker(c: Cardinality) -> &'static str {
    match c {
        Cardinality::One => "!",
        other => other.marker(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn decapitalize(s: &str) -> String {
    // `UserName` -> `user_name`
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> File {
        let p = parse(FileId(0), text);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        p.file
    }

    #[test]
    fn parses_models_with_inline_and_composite_indexes() {
        let f = ok("Pokemon(id: Number)(name)(a, b,) { name: String, a: Number b: Number }");
        let Item::Model(m) = &f.items[0] else {
            panic!("not a model")
        };
        assert_eq!(m.indexes.len(), 3);
        assert!(m.indexes[0].items[0].ty.is_some());
        assert_eq!(m.indexes[2].items.len(), 2);
        assert_eq!(m.members.len(), 3);
    }

    #[test]
    fn ordinary_precedence_multiplication_binds_tighter() {
        let f = ok("M(a) { a: Number assert a + 2 * 3 == 7 }");
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        let Member::Assert(a) = &m.members[1] else {
            panic!()
        };
        let ExprKind::Binary(BinaryOp::Eq, lhs, _) = &a.expr.kind else {
            panic!("{:?}", a.expr.kind)
        };
        let ExprKind::Binary(BinaryOp::Add, _, rhs) = &lhs.kind else {
            panic!("{:?}", lhs.kind)
        };
        assert!(matches!(rhs.kind, ExprKind::Binary(BinaryOp::Mul, _, _)));
    }

    #[test]
    fn type_side_cardinality_is_not_addition() {
        let f = ok("P(id) { id: Number types: T+\n abilities: A* }");
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        let Member::Edge(e) = &m.members[1] else {
            panic!()
        };
        assert_eq!(
            e.type_card.map(|c| c.cardinality),
            Some(Cardinality::AtLeastOne)
        );
    }

    #[test]
    fn long_enum_chains_stay_shallow() {
        let alts: Vec<String> = (0..5000).map(|i| format!("\"v{i}\"")).collect();
        let f = ok(&format!("E: {}", alts.join(" | ")));
        let Item::Alias(a) = &f.items[0] else {
            panic!()
        };
        assert!(a.ty.depth < 20, "depth {}", a.ty.depth);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!(
            "M(a) {{ a: Number assert {}a{} }}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let p = parse(FileId(0), &text);
        assert_eq!(p.diagnostics.len(), 1, "{:?}", p.diagnostics);
        assert_eq!(p.diagnostics[0].code, "kye::too-complex");
    }

    #[test]
    fn doc_comments_attach_to_the_next_item() {
        let f = ok("# A user.\n# Second line.\nUser(id) {\n  # The key.\n  id: Number # not doc\n  name: String\n}");
        let Item::Model(m) = &f.items[0] else {
            panic!()
        };
        assert_eq!(m.doc.as_deref(), Some("A user.\nSecond line."));
        let Member::Edge(e) = &m.members[0] else {
            panic!()
        };
        assert_eq!(e.doc.as_deref(), Some("The key."));
        let Member::Edge(e) = &m.members[1] else {
            panic!()
        };
        assert_eq!(e.doc, None);
    }
}
