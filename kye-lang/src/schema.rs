//! Compiled schemas: what the parser and checker produce and what the validator,
//! the macros and the runtime consume.
//!
//! A [`Schema`] is always fully checked: every type reference resolves, every index names
//! an edge of its model, aliases are inlined. Code holding a `Schema` never has to handle
//! a dangling name.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::diagnostic::Diagnostic;
use crate::span::{SourceMap, Span};

/// A checked set of models compiled from one or more `.kye` files.
#[derive(Debug, Clone)]
pub struct Schema {
    /// The source files the schema was compiled from (kept for diagnostics).
    pub sources: SourceMap,
    models: Vec<Model>,
    by_name: BTreeMap<String, usize>,
    /// Lookup tables of each model, parallel to `models`.
    lookups: Vec<ModelLookup>,
    warnings: Vec<Diagnostic>,
}

impl Schema {
    /// Builds a schema from already-checked models. Used by the checker; model names must be unique.
    pub fn from_models(sources: SourceMap, models: Vec<Model>) -> Self {
        let by_name = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let lookups = models.iter().map(ModelLookup::new).collect();
        Schema {
            sources,
            models,
            by_name,
            lookups,
            warnings: Vec::new(),
        }
    }

    /// Attaches the warnings found while compiling.
    pub fn with_warnings(mut self, warnings: Vec<Diagnostic>) -> Self {
        self.warnings = warnings;
        self
    }

    /// Warnings found while compiling (the schema is usable; they point at likely mistakes).
    /// Render one with [`Diagnostic::render`] and [`Schema::sources`].
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The model with this name.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// All models, in declaration order.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// All model names, sorted.
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// `file:line:col` of a span, for messages.
    pub fn location(&self, span: Span) -> String {
        self.sources.location(span)
    }

    /// The lookup tables of `model`, built once with the schema. A model that is not one of
    /// this schema's (a copy) gets its tables built on the spot.
    pub(crate) fn lookup<'a>(&'a self, model: &Model) -> Cow<'a, ModelLookup> {
        // `model` points into `self.models` when it is one of ours: its position follows from
        // the address, and is confirmed by comparing pointers.
        let offset = (model as *const Model as usize).wrapping_sub(self.models.as_ptr() as usize);
        let i = offset / std::mem::size_of::<Model>();
        let ours = self.models.get(i).is_some_and(|m| std::ptr::eq(m, model));
        if ours {
            Cow::Borrowed(&self.lookups[i])
        } else {
            Cow::Owned(ModelLookup::new(model))
        }
    }
}

/// What validation looks up in a model for every record, computed once per model.
#[derive(Debug, Clone)]
pub(crate) struct ModelLookup {
    /// Field name of source data → position of its edge (see [`ModelLookup::field`]).
    fields: HashMap<Box<str>, usize, foldhash::fast::FixedState>,
    /// For each assertion, the positions of its edges (`None`: not an edge of the model).
    assertion_edges: Vec<Vec<Option<usize>>>,
    /// Edge positions in the order of their names.
    name_order: Vec<usize>,
}

impl ModelLookup {
    fn new(model: &Model) -> Self {
        let mut fields =
            HashMap::with_capacity_and_hasher(2 * model.edges.len(), Default::default());
        // Titles first, then names; the first edge with a column or name keeps it.
        let columns = model.edges.iter().map(Edge::column);
        let names = model.edges.iter().map(|e| e.name.as_str());
        for (i, field) in columns.enumerate().chain(names.enumerate()) {
            fields.entry(field.into()).or_insert(i);
        }
        let assertion_edges = model
            .assertions
            .iter()
            .map(|a| a.edges.iter().map(|n| model.edge_position(n)).collect())
            .collect();
        let mut name_order: Vec<usize> = (0..model.edges.len()).collect();
        name_order.sort_by(|&a, &b| model.edges[a].name.cmp(&model.edges[b].name));
        ModelLookup {
            fields,
            assertion_edges,
            name_order,
        }
    }

    /// Position of the edge a field of source data refers to: the first edge with that title
    /// (or, without a title, that name) as its [`Edge::column`], else the first edge with that
    /// name.
    pub(crate) fn field(&self, field: &str) -> Option<usize> {
        self.fields.get(field).copied()
    }

    /// Positions of the edges of assertion `a` of the model, in the order of
    /// [`Assertion::edges`].
    pub(crate) fn assertion_edges(&self, a: usize) -> &[Option<usize>] {
        &self.assertion_edges[a]
    }

    /// Positions of the model's edges, sorted by edge name (stable: equal names keep
    /// declaration order).
    pub(crate) fn name_order(&self) -> &[usize] {
        &self.name_order
    }
}

/// A model: a named record type with its unique indexes.
///
/// A model without an index is a **value object**: it has no identity of its own, so it is
/// only ever nested inside the records of other models and stored with each of them (never
/// shared between two parents, never fetched or referenced on its own). The checker accepts
/// a model without an index only when some edge has it as its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Model name, e.g. `Pokemon`.
    pub name: String,
    /// Span of the model name in its declaration.
    pub span: Span,
    /// Unique indexes; the first is the primary one. Empty for a value object
    /// ([`Model::is_value_object`]).
    pub indexes: Vec<Index>,
    /// Edges in declaration order.
    pub edges: Vec<Edge>,
    /// `assert` statements of the model.
    pub assertions: Vec<Assertion>,
    /// Text of `#` comment lines directly above the model, if any.
    pub doc: Option<String>,
}

impl Model {
    /// The edge with this name.
    pub fn edge(&self, name: &str) -> Option<&Edge> {
        self.edges.iter().find(|e| e.name == name)
    }

    /// Position of the edge with this name in [`Model::edges`].
    pub fn edge_position(&self, name: &str) -> Option<usize> {
        self.edges.iter().position(|e| e.name == name)
    }

    /// The edge whose source column is `column` (its title if it has one, else its name).
    pub fn edge_by_column(&self, column: &str) -> Option<&Edge> {
        self.edges.iter().find(|e| e.column() == column)
    }

    /// The primary (first) index; `None` for a value object.
    pub fn primary_index(&self) -> Option<&Index> {
        self.indexes.first()
    }

    /// True for a model without an index: a value object, stored inside each record that
    /// nests it, with no identity of its own.
    pub fn is_value_object(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The index whose edges are exactly `edges` (order-sensitive), if any.
    pub fn index_named(&self, edges: &[&str]) -> Option<&Index> {
        self.indexes.iter().find(|ix| {
            ix.edges.len() == edges.len() && ix.edges.iter().zip(edges).all(|(a, b)| a == b)
        })
    }

    /// True when `edge` is part of any index.
    pub fn is_index_edge(&self, edge: &str) -> bool {
        self.indexes
            .iter()
            .any(|ix| ix.edges.iter().any(|e| e == edge))
    }
}

/// A unique index: a list of edge names, e.g. `(year, month, day)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Names of the edges making up the index, in order.
    pub edges: Vec<String>,
    /// Span of the parenthesised group.
    pub span: Span,
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({})", self.edges.join(", "))
    }
}

/// How many values an edge holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cardinality {
    /// No marker or `!`: exactly one.
    One,
    /// `?`: zero or one.
    Optional,
    /// `*`: any number.
    Many,
    /// `+`: one or more.
    AtLeastOne,
}

impl Cardinality {
    /// True for `*` and `+`.
    pub fn is_multiple(self) -> bool {
        matches!(self, Cardinality::Many | Cardinality::AtLeastOne)
    }

    /// True for `?` and `*`.
    pub fn allows_none(self) -> bool {
        matches!(self, Cardinality::Optional | Cardinality::Many)
    }

    /// The suffix character used in kye source (`""`, `"?"`, `"*"`, `"+"`).
    pub fn marker(self) -> &'static str {
        match self {
            Cardinality::One => "",
            Cardinality::Optional => "?",
            Cardinality::Many => "*",
            Cardinality::AtLeastOne => "+",
        }
    }
}

/// An edge (field) of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    /// Edge name, e.g. `base_experience`.
    pub name: String,
    /// Optional quoted title naming the source column: `id "User Id": Number`.
    pub title: Option<String>,
    /// How many values the edge holds.
    pub cardinality: Cardinality,
    /// The value type.
    pub ty: Type,
    /// Span of the whole edge declaration.
    pub span: Span,
    /// Text of `#` comment lines directly above the edge, if any.
    pub doc: Option<String>,
}

impl Edge {
    /// The name the edge has in source data: its title if it has one, else its name.
    pub fn column(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }
}

/// The built-in value types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Primitive {
    /// Text. Numbers are accepted and read as their decimal text.
    String,
    /// A number (f64). Strings that parse as numbers are accepted.
    Number,
    /// `true`/`false`.
    Boolean,
}

impl fmt::Display for Primitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Primitive::String => "String",
            Primitive::Number => "Number",
            Primitive::Boolean => "Boolean",
        })
    }
}

/// The type of an edge after aliases are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `String`, `Number` or `Boolean`.
    Primitive(Primitive),
    /// Another model, by name: a nested record, or a reference by its index value.
    Model(String),
    /// A value of `base` type that must satisfy `constraint`, an expression in which
    /// [`ExprKind::This`] stands for the value. Literal constants (`"SuperMart"`), enums
    /// (`"A" | "B"`), logic (`("E1" | "E2") & !"E3"`) and regexes (`/a+/`) compile to this.
    Constrained {
        /// The primitive the value must first be.
        base: Primitive,
        /// The predicate over the value.
        constraint: Expr,
        /// The alias name the type came from, if any (for messages).
        alias: Option<String>,
    },
}

impl Type {
    /// The primitive a value of this type is stored as, or `None` for model types.
    pub fn primitive(&self) -> Option<Primitive> {
        match self {
            Type::Primitive(p) | Type::Constrained { base: p, .. } => Some(*p),
            Type::Model(_) => None,
        }
    }
}

/// An `assert` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    /// The asserted expression.
    pub expr: Expr,
    /// Span of the whole statement.
    pub span: Span,
    /// The expression's source text, for messages (e.g. `age >= 0`).
    pub text: String,
    /// Edges the expression reads, sorted and deduplicated.
    pub edges: Vec<String>,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it is in the source.
    pub span: Span,
}

/// The kinds of expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// The value being checked, inside a [`Type::Constrained`] constraint.
    This,
    /// An edge of the enclosing model, inside an assertion.
    Edge(String),
    /// A literal constant.
    Literal(Literal),
    /// A regular expression literal `/.../`; a value matches when the pattern matches the whole value.
    ///
    /// The checker only produces it as an operand of `==` / `!=` opposite a String: a regex type
    /// `/a+/` compiles to `This == /a+/`, and an assertion may say `code != /TEST.*/`.
    Regex(Pattern),
    /// A unary operation.
    Unary(UnaryOp, Box<Expr>),
    /// A binary operation.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

/// A literal constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"`.
    String(String),
    /// `42`, `-1.5e3`.
    Number(f64),
    /// `TRUE`, `FALSE`, `true`, `false`.
    Boolean(bool),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write!(f, "{s:?}"),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// A compiled regular expression that remembers its source pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written between the slashes.
    pub source: String,
    /// The compiled regex (anchored so that it matches the whole value).
    pub regex: regex::Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `!x`: logical not (on a constraint: the value must not satisfy `x`).
    Not,
    /// `-x`: numeric negation.
    Neg,
}

/// Binary operators, from loosest to tightest binding:
/// `|`, `^`, `&`, comparisons, `+ -`, `* / %`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `|`
    Or,
    /// `^`
    Xor,
    /// `&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

impl BinaryOp {
    /// The operator as written in kye source.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "|",
            BinaryOp::Xor => "^",
            BinaryOp::And => "&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }
}

impl BinaryOp {
    /// Binding strength, higher binds tighter (`|` is 1, `*` is 6).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::Xor => 2,
            BinaryOp::And => 3,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => 4,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 6,
        }
    }
}

/// Prints the expression in kye syntax with the fewest parentheses that keep its meaning.
/// In a constraint, `This == x` prints as just `x` (the way it is written in a type), so
/// `("A" | "B") & !"C"` prints back as written.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, 0)
    }
}

/// Precedence of prefix operators and atoms when printing.
const PREFIX: u8 = 7;

/// The precedence an expression prints at (atoms 8).
fn print_precedence(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary(BinaryOp::Eq, l, r) if l.kind == ExprKind::This => print_precedence(r),
        ExprKind::Binary(op, _, _) => op.precedence(),
        ExprKind::Unary(..) => PREFIX,
        _ => 8,
    }
}

fn write_expr(f: &mut fmt::Formatter<'_>, e: &Expr, min: u8) -> fmt::Result {
    let parens = print_precedence(e) < min;
    if parens {
        f.write_str("(")?;
    }
    match &e.kind {
        ExprKind::This => f.write_str("value")?,
        ExprKind::Edge(name) => f.write_str(name)?,
        ExprKind::Literal(l) => write!(f, "{l}")?,
        ExprKind::Regex(p) => write!(f, "/{}/", p.source.replace('/', "\\/"))?,
        // `This == x` in a constraint is written `x`.
        ExprKind::Binary(BinaryOp::Eq, l, r) if l.kind == ExprKind::This => write_expr(f, r, 0)?,
        ExprKind::Unary(op, inner) => {
            f.write_str(match op {
                UnaryOp::Not => "!",
                UnaryOp::Neg => "-",
            })?;
            write_expr(f, inner, PREFIX)?;
        }
        ExprKind::Binary(op, l, r) => {
            let p = op.precedence();
            let chains = matches!(op, BinaryOp::Or | BinaryOp::Xor | BinaryOp::And);
            // Left operands of left-associative operators may have the same precedence;
            // comparisons do not chain, so both their sides must bind tighter.
            write_expr(f, l, if p == 4 { p + 1 } else { p })?;
            write!(f, " {} ", op.symbol())?;
            write_expr(f, r, if chains { p } else { p + 1 })?;
        }
    }
    if parens {
        f.write_str(")")?;
    }
    Ok(())
}

/// `String`, a model name, an alias name, or the constraint in kye syntax (`"A" | "B"`).
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Primitive(p) => write!(f, "{p}"),
            Type::Model(m) => f.write_str(m),
            Type::Constrained { alias: Some(a), .. } => f.write_str(a),
            Type::Constrained { constraint, .. } => write!(f, "{constraint}"),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The lookup table finds the edge a linear scan does: the first edge whose column is the
    /// field, else the first edge whose name is.
    #[test]
    fn field_lookup_prefers_titles_then_names() {
        let schema = crate::compile_str(
            "t.kye",
            r#"T(id) { id "Key": Number, a "b": String, b "x": String, c: Number }"#,
        )
        .expect("schema compiles");
        let model = schema.model("T").expect("model T");
        let lookup = schema.lookup(model);
        let scan = |field: &str| {
            let edges = &model.edges;
            (edges.iter().position(|e| e.column() == field))
                .or_else(|| edges.iter().position(|e| e.name == field))
        };
        for field in ["Key", "id", "a", "b", "x", "c", "", "B", "zz"] {
            assert_eq!(lookup.field(field), scan(field), "field {field:?}");
        }
        assert_eq!(lookup.field("b"), Some(1));
        assert_eq!(lookup.field("x"), Some(2));
        // A copy of the model (not the schema's own) gets the same answers.
        let copy = model.clone();
        assert!(matches!(schema.lookup(&copy), std::borrow::Cow::Owned(_)));
        assert_eq!(schema.lookup(&copy).field("b"), Some(1));
        assert!(matches!(
            schema.lookup(model),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
