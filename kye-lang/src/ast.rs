//! The syntax tree of one `.kye` file, as written (names unresolved).
//!
//! The parser produces it; [`crate::check`] turns the trees of all files into a checked
//! [`crate::schema::Schema`]. Parts that failed to parse are kept as [`ExprKind::Error`] (or with
//! a `recovered` flag) so the checker does not report follow-up errors about them.

use crate::schema::{BinaryOp, Cardinality, UnaryOp};
use crate::span::Span;

/// A name with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The name as written.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// One parsed file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct File {
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `User(id) { ... }`
    Model(ModelDef),
    /// `Name: expression`
    Alias(AliasDef),
}

/// A model definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDef {
    /// The model name.
    pub name: Ident,
    /// The parenthesised index groups, in order.
    pub indexes: Vec<IndexDef>,
    /// Edges and assertions of the body.
    pub members: Vec<Member>,
    /// `#` comment lines directly above the definition.
    pub doc: Option<String>,
    /// Span from the name to the closing brace.
    pub span: Span,
    /// Span of the opening `{`, if any.
    pub open_brace: Option<Span>,
    /// True when part of the header failed to parse (suppresses follow-up errors).
    pub recovered: bool,
}

/// One parenthesised index group: `(year, month, day)` or `(id: Number)`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexDef {
    /// The edges of the group.
    pub items: Vec<IndexItem>,
    /// Span of the group including the parentheses.
    pub span: Span,
}

/// An edge named in an index group, optionally declared there with a type.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexItem {
    /// The edge name.
    pub name: Ident,
    /// `id: Number` declares the edge inline.
    pub ty: Option<Expr>,
}

/// A statement in a model body.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// `name: Type`
    Edge(EdgeDef),
    /// `assert expression`
    Assert(AssertDef),
}

/// A cardinality marker with its location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CardMark {
    /// What the marker means (`!` is [`Cardinality::One`]).
    pub cardinality: Cardinality,
    /// Where it is written.
    pub span: Span,
}

/// An edge declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeDef {
    /// The edge name.
    pub name: Ident,
    /// The quoted title (source column name), if any.
    pub title: Option<(String, Span)>,
    /// Cardinality written after the name (`tags*: String`).
    pub name_card: Option<CardMark>,
    /// The type expression.
    pub ty: Expr,
    /// Cardinality written after the type (`types: PokemonType+`).
    pub type_card: Option<CardMark>,
    /// `#` comment lines directly above the edge.
    pub doc: Option<String>,
    /// The whole declaration.
    pub span: Span,
}

/// An `assert` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct AssertDef {
    /// The asserted expression.
    pub expr: Expr,
    /// The whole statement, from `assert`.
    pub span: Span,
}

/// A top-level type alias `Name: expression`.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasDef {
    /// The alias name.
    pub name: Ident,
    /// The type expression it stands for.
    pub ty: Expr,
    /// `#` comment lines directly above it.
    pub doc: Option<String>,
    /// The whole definition.
    pub span: Span,
}

/// An expression: a type expression (in an edge or alias) or a value expression (in `assert`).
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
    /// Height of the tree (1 for a leaf); the parser keeps it bounded.
    pub depth: u32,
}

/// Expression kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A capitalised name: a built-in type, a model or an alias.
    Type(String),
    /// A lowercase name: an edge of the enclosing model.
    Edge(String),
    /// A string literal.
    Str(String),
    /// A number literal.
    Number(f64),
    /// A boolean literal.
    Bool(bool),
    /// A regular expression literal (pattern between the slashes).
    Regex(String),
    /// A unary operation.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operation.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// Something that failed to parse; already reported.
    Error,
}

impl Expr {
    /// A leaf expression.
    pub fn leaf(kind: ExprKind, span: Span) -> Self {
        Expr {
            kind,
            span,
            depth: 1,
        }
    }

    /// True when the expression is or contains a parse error.
    pub fn has_error(&self) -> bool {
        match &self.kind {
            ExprKind::Error => true,
            ExprKind::Unary(_, e) => e.has_error(),
            ExprKind::Binary(_, a, b) => a.has_error() || b.has_error(),
            _ => false,
        }
    }
}
