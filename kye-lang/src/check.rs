//! The checker: syntax trees of all files to checked [`Model`]s.
//!
//! It resolves every name (models and aliases are global across files), inlines aliases into
//! [`Type::Constrained`] constraints, validates indexes and assertions, and reports every problem
//! it finds. Parts the parser already reported as broken ([`ast::ExprKind::Error`], models
//! marked `recovered`) are skipped quietly so one mistake gives one error.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::ast::{self, Item, Member};
use crate::diagnostic::{did_you_mean, CompileError, Diagnostic};
use crate::parser::parse;
use crate::schema::{
    Assertion, BinaryOp, Cardinality, Edge, Expr, ExprKind, Index, Literal, Model, Pattern,
    Primitive, Schema, Type, UnaryOp,
};
use crate::span::{SourceMap, Span};

/// Highest compiled constraint or assertion tree accepted after aliases are inlined.
pub const MAX_COMPILED_DEPTH: u32 = 256;
/// Most nodes in one compiled constraint after aliases are inlined.
pub const MAX_COMPILED_SIZE: u32 = 100_000;
/// Most diagnostics reported by one compile; the rest are summarised in one line.
pub const MAX_DIAGNOSTICS: usize = 200;
/// Deepest recursion through type expressions and the aliases they use.
pub const MAX_CHECK_DEPTH: usize = 400;
/// Longest chain of aliases referring to aliases.
pub const MAX_ALIAS_CHAIN: usize = 64;

/// Edge names that cannot become Rust identifiers (not even raw ones).
const RESERVED_EDGE_NAMES: [&str; 4] = ["self", "super", "crate", "_"];

const BUILTINS: [(&str, Primitive); 3] = [
    ("String", Primitive::String),
    ("Number", Primitive::Number),
    ("Boolean", Primitive::Boolean),
];

/// Compiles the files of `sources` into one checked [`Schema`].
///
/// Every file is parsed (all syntax errors are collected), then all files are checked together:
/// a model in one file may use a model or alias defined in another. On success the schema
/// carries the warnings ([`Schema::warnings`]); on failure [`CompileError`] holds every
/// diagnostic, errors first.
///
/// ```
/// use kye_lang::{compile, SourceMap};
/// let mut sources = SourceMap::new();
/// sources.add("types.kye", "Status: \"OPEN\" | \"CLOSED\"");
/// sources.add("models.kye", "Ticket(id) { id: Number, status: Status }");
/// let schema = compile(sources).unwrap();
/// assert_eq!(schema.model("Ticket").unwrap().edges.len(), 2);
/// ```
pub fn compile(sources: SourceMap) -> Result<Schema, CompileError> {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    for (id, file) in sources.files() {
        let parsed = parse(id, &file.text);
        diagnostics.extend(parsed.diagnostics);
        files.push(parsed.file);
    }
    let (models, more) = check(&sources, &files);
    diagnostics.extend(more);
    diagnostics.sort_by_key(|d| {
        (
            d.severity,
            d.primary.span.file,
            d.primary.span.start,
            d.primary.span.end,
        )
    });
    if diagnostics.len() > MAX_DIAGNOSTICS {
        let rest = diagnostics.len() - MAX_DIAGNOSTICS;
        let at = diagnostics[MAX_DIAGNOSTICS].primary.span;
        diagnostics.truncate(MAX_DIAGNOSTICS);
        diagnostics.push(
            Diagnostic::error(
                "kye::too-many-errors",
                format!("{rest} more problems not shown"),
                at,
                "the next one is here",
            )
            .with_hint("fix the errors above and compile again"),
        );
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(CompileError {
            sources,
            diagnostics,
        });
    }
    Ok(Schema::from_models(sources, models).with_warnings(diagnostics))
}

/// Compiles one source text named `name` (the name shows in diagnostics).
///
/// ```
/// let err = kye_lang::compile_str("models.kye", "User(id) { id: Numbr }").unwrap_err();
/// assert_eq!(err.diagnostics[0].code, "kye::unknown-type");
/// assert_eq!(err.diagnostics[0].hint.as_deref(), Some("did you mean `Number`?"));
/// ```
pub fn compile_str(name: &str, text: &str) -> Result<Schema, CompileError> {
    let mut sources = SourceMap::new();
    sources.add(name, text);
    compile(sources)
}

/// Checks the parsed files of one schema. Returns the models (meaningful only when no
/// diagnostic is an error) and all diagnostics found.
pub fn check(sources: &SourceMap, files: &[ast::File]) -> (Vec<Model>, Vec<Diagnostic>) {
    let mut cx = Checker {
        sources,
        defs: HashMap::new(),
        order: Vec::new(),
        alias_state: HashMap::new(),
        stack: Vec::new(),
        diags: Vec::new(),
        chain_reported: false,
        depth: 0,
        depth_reported: false,
    };
    cx.collect(files);
    let models = cx.models(files);
    (models, cx.diags)
}

/// What an assertion can refer to.
struct Scope<'m, 'e> {
    model: &'m ast::ModelDef,
    edges: HashMap<&'e str, &'e Edge>,
    declared: Vec<&'m str>,
    declared_at: HashMap<&'m str, Span>,
}

#[derive(Clone, Copy)]
enum Def<'a> {
    Model(&'a ast::ModelDef),
    Alias(&'a ast::AliasDef),
}

impl Def<'_> {
    fn name_span(&self) -> Span {
        match self {
            Def::Model(m) => m.name.span,
            Def::Alias(a) => a.name.span,
        }
    }
}

/// A compiled constraint with its size and height, so inlining cannot blow up.
#[derive(Clone)]
struct Constraint {
    expr: Expr,
    size: u32,
    depth: u32,
}

/// What a type expression means.
#[derive(Clone)]
enum TypeVal {
    Model(String),
    Value {
        base: Primitive,
        /// `None` means every value of `base` is allowed.
        constraint: Option<Constraint>,
    },
}

#[derive(Clone)]
enum AliasState {
    Resolving,
    Done(Option<TypeVal>),
}

struct Checker<'a> {
    sources: &'a SourceMap,
    defs: HashMap<&'a str, Def<'a>>,
    /// Global names in definition order (for suggestions).
    order: Vec<&'a str>,
    alias_state: HashMap<&'a str, AliasState>,
    stack: Vec<&'a str>,
    diags: Vec<Diagnostic>,
    /// The alias-chain limit was reported (once is enough).
    chain_reported: bool,
    /// Current recursion depth of `type_val`, across aliases.
    depth: usize,
    /// The depth limit was reported.
    depth_reported: bool,
}

/// Edge names that say, by convention, that they identify a record.
const IDENTIFYING_NAMES: [&str; 4] = ["id", "key", "uuid", "code"];

/// The help of `kye::missing-index`. It proposes an edge only when its name says that it
/// identifies a record (`id`, `<model>_id`, `uuid`, …): a measurement such as
/// `heart_rate_bpm` must never be proposed, since two records sharing it would be merged.
fn missing_index_hint(m: &Model) -> String {
    let model_id = format!("{}_id", m.name.to_ascii_lowercase());
    let candidate = m.edges.iter().find(|e| {
        let n = e.name.to_ascii_lowercase();
        e.cardinality == Cardinality::One
            && e.ty.primitive().is_some()
            && (IDENTIFYING_NAMES.contains(&n.as_str()) || n == model_id)
    });
    let nested = format!(
        "a model used only as the type of edges of other models (`{}: {}`) needs none: it is a value object, stored with each record that holds it",
        m.name.to_ascii_lowercase(),
        m.name
    );
    match candidate {
        Some(e) => format!(
            "name the edge(s) that identify a record after the model name: `{}({}) {{ ... }}`; {nested}",
            m.name, e.name
        ),
        None => format!(
            "if some edges identify a record, name them after the model name (`{}(edge) {{ ... }}`); {nested}",
            m.name
        ),
    }
}

fn builtin(name: &str) -> Option<Primitive> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

fn leaf(kind: ExprKind, span: Span) -> Constraint {
    Constraint {
        expr: Expr { kind, span },
        size: 1,
        depth: 1,
    }
}

fn this_eq(lit: Literal, span: Span) -> Constraint {
    Constraint {
        expr: Expr {
            kind: ExprKind::Binary(
                BinaryOp::Eq,
                Box::new(Expr {
                    kind: ExprKind::This,
                    span,
                }),
                Box::new(Expr {
                    kind: ExprKind::Literal(lit),
                    span,
                }),
            ),
            span,
        },
        size: 3,
        depth: 2,
    }
}

fn primitive_of(lit: &Literal) -> Primitive {
    match lit {
        Literal::String(_) => Primitive::String,
        Literal::Number(_) => Primitive::Number,
        Literal::Boolean(_) => Primitive::Boolean,
    }
}

/// Compiles `/pattern/` so that it must match the whole value.
fn compile_regex(pattern: &str) -> Result<Pattern, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map(|regex| Pattern {
            source: pattern.to_string(),
            regex,
        })
        .map_err(|e| {
            // The regex crate's messages are multi-line with their own caret; keep the last line.
            let text = e.to_string();
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid pattern")
                .trim()
                .trim_start_matches("error: ")
                .to_string()
        })
}

impl<'a> Checker<'a> {
    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn text(&self, span: Span) -> &'a str {
        self.sources
            .get(span.file)
            .map(|f| f.slice(span))
            .unwrap_or("")
    }

    // ---- global names -------------------------------------------------------------------

    fn collect(&mut self, files: &'a [ast::File]) {
        let mut model_lower: HashMap<String, (&'a str, Span)> = HashMap::new();
        for file in files {
            for item in &file.items {
                let (name, def) = match item {
                    Item::Model(m) => (&m.name, Def::Model(m)),
                    Item::Alias(a) => (&a.name, Def::Alias(a)),
                };
                if name.name == "Self" {
                    self.error(
                        Diagnostic::error(
                            "kye::reserved-name",
                            "`Self` cannot be a model or alias name",
                            name.span,
                            "reserved",
                        )
                        .with_hint("names become Rust identifiers, and `Self` cannot be one"),
                    );
                    continue;
                }
                if let Def::Model(_) = def {
                    let lower = name.name.to_ascii_lowercase();
                    if let Some((other, first)) = model_lower.get(&lower) {
                        if *other != name.name {
                            self.error(
                                Diagnostic::error(
                                    "kye::case-collision",
                                    format!(
                                        "models `{other}` and `{}` differ only in letter case",
                                        name.name
                                    ),
                                    name.span,
                                    "same name ignoring case",
                                )
                                .with_secondary(*first, "the other model")
                                .with_hint(
                                    "they would be the same table in a SQL database; rename one",
                                ),
                            );
                            continue;
                        }
                    } else {
                        model_lower.insert(lower, (name.name.as_str(), name.span));
                    }
                }
                if builtin(&name.name).is_some() {
                    self.error(
                        Diagnostic::error(
                            "kye::reserved-name",
                            format!("`{}` is a built-in type and cannot be redefined", name.name),
                            name.span,
                            "built-in type name",
                        )
                        .with_hint("choose another name"),
                    );
                    continue;
                }
                if let Some(first) = self.defs.get(name.name.as_str()) {
                    let what = |d: &Def| match d {
                        Def::Model(_) => "model",
                        Def::Alias(_) => "type alias",
                    };
                    let d = Diagnostic::error(
                        "kye::duplicate-definition",
                        format!("`{}` is defined more than once", name.name),
                        name.span,
                        format!("{} `{}` redefined here", what(&def), name.name),
                    )
                    .with_secondary(
                        first.name_span(),
                        format!("first defined here as a {}", what(first)),
                    )
                    .with_hint("model and alias names share one namespace across all files");
                    self.error(d);
                    continue;
                }
                self.defs.insert(&name.name, def);
                self.order.push(&name.name);
            }
        }
    }

    /// A close edge name, unless so many errors were found that suggestions are not worth
    /// their cost (garbage input can have thousands of names and errors).
    fn suggest<'n>(&self, name: &str, candidates: &[&'n str]) -> Option<&'n str> {
        if self.diags.len() > 100 {
            return None;
        }
        did_you_mean(name, candidates.iter().copied())
    }

    fn suggest_type(&self, name: &str) -> Option<String> {
        if self.diags.len() > 100 {
            return None;
        }
        let candidates = BUILTINS
            .iter()
            .map(|(n, _)| *n)
            .chain(self.order.iter().copied());
        did_you_mean(name, candidates).map(|s| format!("did you mean `{s}`?"))
    }

    // ---- types --------------------------------------------------------------------------

    fn resolve_alias(&mut self, alias: &'a ast::AliasDef, use_span: Span) -> Option<TypeVal> {
        let name = alias.name.name.as_str();
        match self.alias_state.get(name) {
            Some(AliasState::Done(v)) => return v.clone(),
            Some(AliasState::Resolving) => {
                self.report_cycle(name, use_span);
                return None;
            }
            None => {}
        }
        if self.stack.len() >= MAX_ALIAS_CHAIN {
            self.report_long_chain(use_span);
            self.alias_state.insert(name, AliasState::Done(None));
            return None;
        }
        self.alias_state.insert(name, AliasState::Resolving);
        self.stack.push(name);
        let v = self.type_val(&alias.ty);
        self.stack.pop();
        // A cycle may already have marked this alias as failed.
        if let Some(AliasState::Done(None)) = self.alias_state.get(name) {
            return None;
        }
        self.alias_state.insert(name, AliasState::Done(v.clone()));
        v
    }

    #[inline(never)]
    fn report_long_chain(&mut self, span: Span) {
        if !self.chain_reported {
            self.chain_reported = true;
            self.error(
                Diagnostic::error(
                    "kye::too-complex",
                    format!("type alias chain is longer than {MAX_ALIAS_CHAIN} aliases"),
                    span,
                    "too many aliases referring to aliases",
                )
                .with_hint("refer to the final type directly"),
            );
        }
    }

    #[inline(never)]
    fn report_cycle(&mut self, name: &'a str, use_span: Span) {
        let start = self.stack.iter().position(|n| *n == name).unwrap_or(0);
        let cycle: Vec<&'a str> = self.stack[start..].to_vec();
        let mut path: Vec<&str> = cycle.clone();
        path.push(name);
        let first_span = match self.defs.get(name) {
            Some(d) => d.name_span(),
            None => use_span,
        };
        let mut d = Diagnostic::error(
            "kye::alias-cycle",
            format!("type alias `{name}` refers to itself"),
            first_span,
            format!("cycle: {}", path.join(" -> ")),
        )
        .with_hint("an alias must end in a built-in type, a model, a literal or a regex");
        d = d.with_secondary(use_span, format!("`{name}` is used here"));
        self.error(d);
        for n in cycle {
            self.alias_state.insert(n, AliasState::Done(None));
        }
    }

    /// Compiles a type expression. `None` means an error was reported (or already was).
    ///
    /// Recursion goes through aliases too, so the total depth is bounded here (each alias
    /// alone is bounded by the parser).
    fn type_val(&mut self, e: &'a ast::Expr) -> Option<TypeVal> {
        if self.depth >= MAX_CHECK_DEPTH {
            self.report_too_deep(e.span);
            return None;
        }
        self.depth += 1;
        let v = self.type_val_inner(e);
        self.depth -= 1;
        v
    }

    // The functions on the recursion path (type_val, type_val_inner, type_unary, type_binary,
    // resolve_alias) keep their frames small: diagnostics are built in separate
    // `#[inline(never)]` functions, because debug builds give every temporary its own slot.

    #[inline(never)]
    fn report_too_deep(&mut self, span: Span) {
        if !self.depth_reported {
            self.depth_reported = true;
            self.error(
                Diagnostic::error(
                    "kye::too-complex",
                    format!(
                        "type is nested more than {MAX_CHECK_DEPTH} levels deep once aliases are expanded"
                    ),
                    span,
                    "too deep",
                )
                .with_hint("simplify the aliases it uses"),
            );
        }
    }

    fn type_val_inner(&mut self, e: &'a ast::Expr) -> Option<TypeVal> {
        use ast::ExprKind as K;
        match &e.kind {
            K::Type(name) => {
                if let Some(p) = builtin(name) {
                    return Some(TypeVal::Value {
                        base: p,
                        constraint: None,
                    });
                }
                match self.defs.get(name.as_str()).copied() {
                    Some(Def::Model(m)) => Some(TypeVal::Model(m.name.name.clone())),
                    Some(Def::Alias(a)) => self.resolve_alias(a, e.span),
                    None => {
                        self.report_unknown_type(name, e.span);
                        None
                    }
                }
            }
            K::Unary(op, inner) => self.type_unary(*op, inner, e.span),
            K::Binary(op, a, b) => self.type_binary(*op, a, b, e.span),
            _ => self.type_leaf(e),
        }
    }

    #[inline(never)]
    fn type_leaf(&mut self, e: &ast::Expr) -> Option<TypeVal> {
        use ast::ExprKind as K;
        let value = |base, c| {
            Some(TypeVal::Value {
                base,
                constraint: Some(c),
            })
        };
        match &e.kind {
            K::Str(s) => value(
                Primitive::String,
                this_eq(Literal::String(s.clone()), e.span),
            ),
            K::Number(n) => value(Primitive::Number, this_eq(Literal::Number(*n), e.span)),
            K::Bool(b) => value(Primitive::Boolean, this_eq(Literal::Boolean(*b), e.span)),
            K::Regex(r) => match compile_regex(r) {
                Ok(p) => {
                    let mut c = this_eq(Literal::Boolean(true), e.span);
                    if let ExprKind::Binary(_, _, rhs) = &mut c.expr.kind {
                        rhs.kind = ExprKind::Regex(p);
                    }
                    value(Primitive::String, c)
                }
                Err(msg) => {
                    self.error(Diagnostic::error(
                        "kye::invalid-regex",
                        "invalid regular expression",
                        e.span,
                        msg,
                    ));
                    None
                }
            },
            K::Edge(name) => {
                // The parser reports these; keep the checker total anyway.
                self.error(Diagnostic::error(
                    "kye::expected-type",
                    format!("expected a type, found edge name `{name}`"),
                    e.span,
                    "not a type",
                ));
                None
            }
            _ => None,
        }
    }

    #[inline(never)]
    fn report_unknown_type(&mut self, name: &str, span: Span) {
        let mut d = Diagnostic::error(
            "kye::unknown-type",
            format!("unknown type `{name}`"),
            span,
            "not a model, alias or built-in type",
        );
        if let Some(h) = self.suggest_type(name) {
            d = d.with_hint(h);
        }
        self.error(d);
    }

    fn type_unary(&mut self, op: UnaryOp, inner: &'a ast::Expr, span: Span) -> Option<TypeVal> {
        let v = self.type_val(inner)?;
        let (base, c) = self.value_operand(v, inner, op_name(None, Some(op)))?;
        if op != UnaryOp::Not {
            self.report_type_operator(None, span);
            return None;
        }
        let Some(c) = c else {
            self.report_empty_type(base, span);
            return None;
        };
        let c = self.combine_unary(c, span)?;
        Some(TypeVal::Value {
            base,
            constraint: Some(c),
        })
    }

    fn type_binary(
        &mut self,
        op: BinaryOp,
        a: &'a ast::Expr,
        b: &'a ast::Expr,
        span: Span,
    ) -> Option<TypeVal> {
        let va = self.type_val(a);
        let vb = self.type_val(b);
        let (va, vb) = (va?, vb?);
        let (ba, ca) = self.value_operand(va, a, op_name(Some(op), None))?;
        let (bb, cb) = self.value_operand(vb, b, op_name(Some(op), None))?;
        if !matches!(op, BinaryOp::Or | BinaryOp::And | BinaryOp::Xor) {
            self.report_type_operator(Some(op), span);
            return None;
        }
        if ba != bb {
            self.report_mixed_types(op, ba, bb, span);
            return None;
        }
        let c = match (op, ca, cb) {
            // `String | "A"` allows every string.
            (BinaryOp::Or, None, _) | (BinaryOp::Or, _, None) => None,
            (BinaryOp::And, None, c) | (BinaryOp::And, c, None) => c,
            (_, ca, cb) => {
                let t = || leaf(ExprKind::Literal(Literal::Boolean(true)), span);
                let ca = ca.unwrap_or_else(t);
                let cb = cb.unwrap_or_else(t);
                Some(self.combine(op, ca, cb, span)?)
            }
        };
        Some(TypeVal::Value {
            base: ba,
            constraint: c,
        })
    }

    #[inline(never)]
    fn report_type_operator(&mut self, op: Option<BinaryOp>, span: Span) {
        let sym = op.map(BinaryOp::symbol).unwrap_or("-");
        self.error(
            Diagnostic::error(
                "kye::invalid-type-expression",
                format!("`{sym}` cannot combine types"),
                span,
                "not a type operator",
            )
            .with_hint(
                "types combine with `|`, `&`, `^` and `!`; put rules about values in an `assert`",
            ),
        );
    }

    #[inline(never)]
    fn report_empty_type(&mut self, base: Primitive, span: Span) {
        self.error(
            Diagnostic::error(
                "kye::empty-type",
                format!("`!{base}` matches no value"),
                span,
                "no value is allowed",
            )
            .with_hint("negate a constant instead: `!\"UNKNOWN\"`"),
        );
    }

    #[inline(never)]
    fn report_mixed_types(&mut self, op: BinaryOp, ba: Primitive, bb: Primitive, span: Span) {
        self.error(
            Diagnostic::error(
                "kye::mixed-types",
                format!("`{}` combines a {ba} with a {bb}", op.symbol()),
                span,
                format!("{ba} on the left, {bb} on the right"),
            )
            .with_hint("all parts of a type expression must be of the same built-in type"),
        );
    }

    /// Operands of type operators must be values, not models.
    fn value_operand(
        &mut self,
        v: TypeVal,
        at: &ast::Expr,
        op: &str,
    ) -> Option<(Primitive, Option<Constraint>)> {
        match v {
            TypeVal::Value { base, constraint } => Some((base, constraint)),
            TypeVal::Model(m) => {
                self.report_model_in_expression(&m, at.span, op);
                None
            }
        }
    }

    #[inline(never)]
    fn report_model_in_expression(&mut self, m: &str, span: Span, op: &str) {
        {
            {
                self.error(
                    Diagnostic::error(
                        "kye::model-in-expression",
                        format!("model `{m}` cannot be combined with {op}"),
                        span,
                        "a model type",
                    )
                    .with_hint("only String, Number, Boolean, literals and regexes combine; use one model per edge"),
                );
            }
        }
    }

    fn too_complex(&mut self, span: Span) {
        self.error(
            Diagnostic::error(
                "kye::too-complex",
                "type expression is too large once aliases are expanded",
                span,
                format!("more than {MAX_COMPILED_SIZE} parts or {MAX_COMPILED_DEPTH} levels"),
            )
            .with_hint("simplify the aliases it uses"),
        );
    }

    fn combine_unary(&mut self, c: Constraint, span: Span) -> Option<Constraint> {
        if c.depth + 1 > MAX_COMPILED_DEPTH {
            self.too_complex(span);
            return None;
        }
        Some(Constraint {
            size: c.size + 1,
            depth: c.depth + 1,
            expr: Expr {
                kind: ExprKind::Unary(UnaryOp::Not, Box::new(c.expr)),
                span,
            },
        })
    }

    fn combine(
        &mut self,
        op: BinaryOp,
        a: Constraint,
        b: Constraint,
        span: Span,
    ) -> Option<Constraint> {
        let size = a.size.saturating_add(b.size).saturating_add(1);
        let depth = a.depth.max(b.depth) + 1;
        if size > MAX_COMPILED_SIZE || depth > MAX_COMPILED_DEPTH {
            self.too_complex(span);
            return None;
        }
        Some(Constraint {
            expr: Expr {
                kind: ExprKind::Binary(op, Box::new(a.expr), Box::new(b.expr)),
                span,
            },
            size,
            depth,
        })
    }

    fn edge_type(&mut self, e: &'a ast::Expr) -> Option<Type> {
        let alias = match &e.kind {
            ast::ExprKind::Type(n) if matches!(self.defs.get(n.as_str()), Some(Def::Alias(_))) => {
                Some(n.clone())
            }
            _ => None,
        };
        Some(match self.type_val(e)? {
            TypeVal::Model(m) => Type::Model(m),
            TypeVal::Value {
                base,
                constraint: None,
            } => Type::Primitive(base),
            TypeVal::Value {
                base,
                constraint: Some(c),
            } => Type::Constrained {
                base,
                constraint: c.expr,
                alias,
            },
        })
    }

    // ---- models -------------------------------------------------------------------------

    fn models(&mut self, files: &'a [ast::File]) -> Vec<Model> {
        // Resolve every alias once, so errors inside unused aliases are reported too.
        for file in files {
            for item in &file.items {
                if let Item::Alias(a) = item {
                    if matches!(self.defs.get(a.name.name.as_str()), Some(Def::Alias(d)) if std::ptr::eq(*d, a))
                    {
                        self.resolve_alias(a, a.name.span);
                    }
                }
            }
        }
        let mut models = Vec::new();
        for file in files {
            for item in &file.items {
                if let Item::Model(m) = item {
                    if let Some(model) = self.model(m) {
                        models.push(model);
                    }
                }
            }
        }
        self.value_objects(models)
    }

    /// Keeps the models without an index that some edge nests (value objects, stored inside
    /// each record holding them) and reports the others: with no index and no parent, nothing
    /// could ever identify or hold one of their records.
    fn value_objects(&mut self, models: Vec<Model>) -> Vec<Model> {
        let nested: HashSet<&str> = models
            .iter()
            .flat_map(|m| m.edges.iter())
            .filter_map(|e| match &e.ty {
                Type::Model(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let mut orphans = Vec::new();
        for m in &models {
            if m.indexes.is_empty() && !nested.contains(m.name.as_str()) {
                orphans.push(m.name.clone());
                self.error(
                    Diagnostic::error(
                        "kye::missing-index",
                        format!("model `{}` has no index", m.name),
                        m.span,
                        "no index declared",
                    )
                    .with_hint(missing_index_hint(m)),
                );
            }
        }
        models
            .into_iter()
            .filter(|m| !orphans.contains(&m.name))
            .collect()
    }

    fn model(&mut self, m: &'a ast::ModelDef) -> Option<Model> {
        let mut edges: Vec<Edge> = Vec::new();
        // Every declared edge name (also the broken ones), with the span of its name.
        let mut declared: Vec<(&'a str, Span)> = Vec::new();
        let mut declared_at: HashMap<&'a str, Span> = HashMap::new();
        let mut lower_at: HashMap<String, (&'a str, Span)> = HashMap::new();
        let mut columns: HashMap<String, Span> = HashMap::new();
        let mut ok = true;

        let declare = |cx: &mut Self,
                       name: &'a ast::Ident,
                       declared: &mut Vec<(&'a str, Span)>,
                       declared_at: &mut HashMap<&'a str, Span>,
                       lower_at: &mut HashMap<String, (&'a str, Span)>|
         -> bool {
            if let Some(first) = declared_at.get(name.name.as_str()) {
                let d = Diagnostic::error(
                    "kye::duplicate-edge",
                    format!(
                        "edge `{}` is declared twice in model `{}`",
                        name.name, m.name.name
                    ),
                    name.span,
                    "declared again here",
                )
                .with_secondary(*first, "first declared here");
                cx.error(d);
                return false;
            }
            let lower = name.name.to_ascii_lowercase();
            if let Some((other, first)) = lower_at.get(&lower) {
                let d = Diagnostic::error(
                    "kye::case-collision",
                    format!(
                        "edges `{other}` and `{}` of `{}` differ only in letter case",
                        name.name, m.name.name
                    ),
                    name.span,
                    "same name ignoring case",
                )
                .with_secondary(*first, "the other edge")
                .with_hint("they would be the same column in a SQL database; rename one");
                cx.error(d);
                return false;
            }
            if RESERVED_EDGE_NAMES.contains(&name.name.as_str()) {
                cx.error(
                    Diagnostic::error(
                        "kye::reserved-name",
                        format!("`{}` cannot be an edge name", name.name),
                        name.span,
                        "reserved",
                    )
                    .with_hint(format!(
                        "edge names become Rust identifiers, and `{}` cannot be one; try `{}_`",
                        name.name, name.name
                    )),
                );
                return false;
            }
            declared.push((&name.name, name.span));
            declared_at.insert(&name.name, name.span);
            lower_at.insert(lower, (&name.name, name.span));
            true
        };

        // Edges declared inline in an index: `Pokemon(id: Number)`.
        for ix in &m.indexes {
            for item in &ix.items {
                if let Some(ty) = &item.ty {
                    if !declare(
                        self,
                        &item.name,
                        &mut declared,
                        &mut declared_at,
                        &mut lower_at,
                    ) {
                        ok = false;
                        continue;
                    }
                    match self.edge_type(ty) {
                        Some(t) => {
                            columns.insert(item.name.name.clone(), item.name.span);
                            edges.push(Edge {
                                name: item.name.name.clone(),
                                title: None,
                                cardinality: Cardinality::One,
                                ty: t,
                                span: item.name.span.to(ty.span),
                                doc: None,
                            });
                        }
                        None => ok = false,
                    }
                }
            }
        }

        let mut assertions_src = Vec::new();
        for member in &m.members {
            match member {
                Member::Assert(a) => assertions_src.push(a),
                Member::Edge(e) => {
                    if !declare(
                        self,
                        &e.name,
                        &mut declared,
                        &mut declared_at,
                        &mut lower_at,
                    ) {
                        ok = false;
                        continue;
                    }
                    let card = self.cardinality(e);
                    let Some(ty) = self.edge_type(&e.ty) else {
                        ok = false;
                        continue;
                    };
                    let Some(cardinality) = card else {
                        ok = false;
                        continue;
                    };
                    if let Some((title, span)) = &e.title {
                        if title.trim().is_empty() {
                            self.error(Diagnostic::error(
                                "kye::empty-title",
                                "an edge title cannot be empty",
                                *span,
                                "empty title",
                            ));
                            ok = false;
                        }
                    }
                    let column = e
                        .title
                        .as_ref()
                        .map(|(t, _)| t.clone())
                        .unwrap_or_else(|| e.name.name.clone());
                    let col_span = e.title.as_ref().map(|(_, s)| *s).unwrap_or(e.name.span);
                    if let Some(first) = columns.get(&column) {
                        self.error(
                            Diagnostic::error(
                                "kye::duplicate-column",
                                format!(
                                    "two edges of `{}` read the source column `{column}`",
                                    m.name.name
                                ),
                                col_span,
                                "reads the same column",
                            )
                            .with_secondary(*first, "first use of that column"),
                        );
                        ok = false;
                    } else {
                        columns.insert(column, col_span);
                    }
                    edges.push(Edge {
                        name: e.name.name.clone(),
                        title: e.title.as_ref().map(|(t, _)| t.clone()),
                        cardinality,
                        ty,
                        span: e.span,
                        doc: e.doc.clone(),
                    });
                }
            }
        }
        let declared_names: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
        let edge_map: HashMap<&str, &Edge> = edges.iter().map(|e| (e.name.as_str(), e)).collect();
        let mut seen_indexes: HashMap<Vec<String>, Span> = HashMap::new();

        // Indexes.
        let mut indexes: Vec<Index> = Vec::new();
        for ix in &m.indexes {
            if ix.items.is_empty() {
                self.error(
                    Diagnostic::error(
                        "kye::empty-index",
                        format!("empty index in model `{}`", m.name.name),
                        ix.span,
                        "names no edge",
                    )
                    .with_hint("list the edges that identify a record: `(id)`"),
                );
                ok = false;
                continue;
            }
            let mut names: Vec<String> = Vec::new();
            let mut good = true;
            for item in &ix.items {
                let n = item.name.name.as_str();
                if names.iter().any(|x| x == n) {
                    self.error(Diagnostic::error(
                        "kye::duplicate-index-edge",
                        format!("edge `{n}` appears twice in the same index"),
                        item.name.span,
                        "repeated",
                    ));
                    good = false;
                    continue;
                }
                names.push(n.to_string());
                match edge_map.get(n).copied() {
                    // A broken edge (already reported), or a model whose header or body failed
                    // to parse: naming the missing edge would be a follow-up error.
                    None if declared_at.contains_key(n) || m.recovered => good = false,
                    None => {
                        let mut d = Diagnostic::error(
                            "kye::unknown-index-edge",
                            format!(
                                "index of `{}` names `{n}`, which is not an edge of the model",
                                m.name.name
                            ),
                            item.name.span,
                            "no such edge",
                        );
                        d = match self.suggest(n, &declared_names) {
                            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                            None => d.with_hint(format!(
                                "declare it in the body (`{n}: Number`) or inline (`{}({n}: Number)`)",
                                m.name.name
                            )),
                        };
                        self.error(d);
                        good = false;
                    }
                    Some(edge) => {
                        if let Type::Model(target) = &edge.ty {
                            self.error(
                                Diagnostic::error(
                                    "kye::model-in-index",
                                    format!("index edge `{n}` has model type `{target}`"),
                                    item.name.span,
                                    "used in an index",
                                )
                                .with_secondary(edge.span, "declared with a model type here")
                                .with_hint("index edges must be String, Number or Boolean values; index on the referenced model's key instead (e.g. `"
                                    .to_string() + n + "_id: Number`)"),
                            );
                            good = false;
                        } else if edge.cardinality != Cardinality::One {
                            self.error(
                                Diagnostic::error(
                                    "kye::index-cardinality",
                                    format!(
                                        "index edge `{n}` is declared `{}` but indexes need exactly one value",
                                        edge.cardinality.marker()
                                    ),
                                    item.name.span,
                                    "used in an index",
                                )
                                .with_secondary(edge.span, "declared here")
                                .with_hint(format!("declare it as `{n}: ...` without `?`, `*` or `+`")),
                            );
                            good = false;
                        }
                    }
                }
            }
            if !good {
                ok = false;
                continue;
            }
            let mut sorted = names.clone();
            sorted.sort();
            if let Some(prev) = seen_indexes.get(&sorted) {
                let d = Diagnostic::warning(
                    "kye::duplicate-index",
                    format!(
                        "index {} of `{}` repeats an earlier index",
                        ix_text(&names),
                        m.name.name
                    ),
                    ix.span,
                    "same edges as an earlier index",
                )
                .with_secondary(*prev, "earlier index");
                self.error(d);
                continue;
            }
            seen_indexes.insert(sorted, ix.span);
            indexes.push(Index {
                edges: names,
                span: ix.span,
            });
        }
        // A model without an index is a value object when some edge nests it; whether one
        // does is known only once every model is checked (see `Checker::value_objects`).
        if m.recovered {
            ok = false;
        }

        // Assertions.
        let scope = Scope {
            model: m,
            edges: edge_map,
            declared: declared_names,
            declared_at,
        };
        let mut assertions = Vec::new();
        for a in assertions_src {
            if a.expr.has_error() {
                ok = false;
                continue;
            }
            let mut used = BTreeSet::new();
            let Some((expr, ty)) = self.value_expr(&a.expr, &scope, &mut used) else {
                ok = false;
                continue;
            };
            if let Some(t) = ty {
                if t != Primitive::Boolean {
                    self.error(
                        Diagnostic::error(
                            "kye::assertion-not-boolean",
                            format!("an assertion must be a condition, but this is a {t}"),
                            a.expr.span,
                            format!("a {t}"),
                        )
                        .with_hint(match t {
                            Primitive::String => {
                                format!("compare it: `assert {} != \"\"`", self.text(a.expr.span))
                            }
                            _ => format!("compare it: `assert {} >= 0`", self.text(a.expr.span)),
                        }),
                    );
                    ok = false;
                    continue;
                }
            }
            assertions.push(Assertion {
                text: self.text(a.expr.span).to_string(),
                expr: expr.expr,
                span: a.span,
                edges: used.into_iter().collect(),
            });
        }

        if !ok || (indexes.is_empty() && !m.indexes.is_empty()) {
            return None;
        }
        Some(Model {
            name: m.name.name.clone(),
            span: m.name.span,
            indexes,
            edges,
            assertions,
            doc: m.doc.clone(),
        })
    }

    fn cardinality(&mut self, e: &ast::EdgeDef) -> Option<Cardinality> {
        match (e.name_card, e.type_card) {
            (None, None) => Some(Cardinality::One),
            (Some(c), None) | (None, Some(c)) => Some(c.cardinality),
            (Some(a), Some(b)) if a.cardinality == b.cardinality => {
                self.error(
                    Diagnostic::warning(
                        "kye::redundant-cardinality",
                        format!("cardinality of `{}` is given twice", e.name.name),
                        b.span,
                        "repeats the marker on the name",
                    )
                    .with_secondary(a.span, "already given here"),
                );
                Some(a.cardinality)
            }
            (Some(a), Some(b)) => {
                self.error(
                    Diagnostic::error(
                        "kye::conflicting-cardinality",
                        format!("edge `{}` has two different cardinalities", e.name.name),
                        b.span,
                        "on the type",
                    )
                    .with_secondary(a.span, "on the name")
                    .with_hint("write one marker, after the name or after the type"),
                );
                None
            }
        }
    }

    // ---- assertions ---------------------------------------------------------------------

    /// Compiles an assertion expression; returns it with its static type (`None` = unknown).
    ///
    /// Like the type functions, the recursive path (value_expr, value_unary, value_binary)
    /// keeps small frames; leaves and error reports live in `#[inline(never)]` functions.
    fn value_expr(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        used: &mut BTreeSet<String>,
    ) -> Option<(Constraint, Option<Primitive>)> {
        match &e.kind {
            ast::ExprKind::Unary(op, inner) => self.value_unary(*op, inner, e.span, scope, used),
            ast::ExprKind::Binary(op, a, b) => self.value_binary(*op, a, b, e.span, scope, used),
            _ => self.value_leaf(e, scope, used),
        }
    }

    #[inline(never)]
    fn value_leaf(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        used: &mut BTreeSet<String>,
    ) -> Option<(Constraint, Option<Primitive>)> {
        let m = scope.model;
        use ast::ExprKind as K;
        let lit = |l: Literal| {
            let p = primitive_of(&l);
            Some((leaf(ExprKind::Literal(l), e.span), Some(p)))
        };
        match &e.kind {
            K::Str(s) => lit(Literal::String(s.clone())),
            K::Number(n) => lit(Literal::Number(*n)),
            K::Bool(b) => lit(Literal::Boolean(*b)),
            K::Regex(_) => {
                self.error(
                    Diagnostic::error(
                        "kye::regex-position",
                        "a regular expression can only be compared with `==` or `!=`",
                        e.span,
                        "regex here",
                    )
                    .with_hint("write `assert code == /[A-Z]+/`"),
                );
                None
            }
            K::Type(name) => {
                self.error(
                    Diagnostic::error(
                        "kye::type-in-assertion",
                        format!("type name `{name}` cannot be used as a value"),
                        e.span,
                        "assertions use edges and literals",
                    )
                    .with_hint(match self.suggest(name, &scope.declared) {
                        Some(s) => format!("did you mean the edge `{s}`?"),
                        None => "edge names start with a lowercase letter".to_string(),
                    }),
                );
                None
            }
            K::Edge(name) => match scope.edges.get(name.as_str()).copied() {
                Some(edge) => {
                    used.insert(name.clone());
                    match &edge.ty {
                        Type::Model(target) => {
                            self.error(
                                Diagnostic::error(
                                    "kye::model-in-assertion",
                                    format!("edge `{name}` holds `{target}` records and cannot be used as a value"),
                                    e.span,
                                    "a model-typed edge",
                                )
                                .with_secondary(edge.span, "declared here"),
                            );
                            None
                        }
                        t => Some((leaf(ExprKind::Edge(name.clone()), e.span), t.primitive())),
                    }
                }
                None if scope.declared_at.contains_key(name.as_str()) => None, // broken edge, reported
                None => {
                    let mut d = Diagnostic::error(
                        "kye::unknown-edge",
                        format!("model `{}` has no edge `{name}`", m.name.name),
                        e.span,
                        "not an edge of this model",
                    );
                    if let Some(s) = self.suggest(name, &scope.declared) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    self.error(d);
                    None
                }
            },
            // Parse errors (already reported) and constructs handled elsewhere.
            _ => None,
        }
    }

    fn value_unary(
        &mut self,
        op: UnaryOp,
        inner: &ast::Expr,
        span: Span,
        scope: &Scope,
        used: &mut BTreeSet<String>,
    ) -> Option<(Constraint, Option<Primitive>)> {
        let (c, t) = self.value_expr(inner, scope, used)?;
        let want = match op {
            UnaryOp::Not => Primitive::Boolean,
            UnaryOp::Neg => Primitive::Number,
        };
        if !self.check_operand(unary_symbol(op), want, t, inner.span) {
            return None;
        }
        let c = if op == UnaryOp::Not {
            self.combine_unary(c, span)?
        } else {
            Constraint {
                size: c.size + 1,
                depth: c.depth + 1,
                expr: Expr {
                    kind: ExprKind::Unary(UnaryOp::Neg, Box::new(c.expr)),
                    span,
                },
            }
        };
        Some((c, Some(want)))
    }

    fn value_binary(
        &mut self,
        op: BinaryOp,
        a: &ast::Expr,
        b: &ast::Expr,
        span: Span,
        scope: &Scope,
        used: &mut BTreeSet<String>,
    ) -> Option<(Constraint, Option<Primitive>)> {
        let is_eq = matches!(op, BinaryOp::Eq | BinaryOp::Ne);
        // `code == /re/`: the regex side compiles to a pattern.
        let regex_side = |x: &ast::Expr| matches!(x.kind, ast::ExprKind::Regex(_));
        if is_eq && (regex_side(a) != regex_side(b)) {
            let (other, re) = if regex_side(b) { (a, b) } else { (b, a) };
            let (c, t) = self.value_expr(other, scope, used)?;
            if !self.check_operand(op.symbol(), Primitive::String, t, other.span) {
                return None;
            }
            let r = self.regex_operand(re)?;
            return Some((self.combine(op, c, r, span)?, Some(Primitive::Boolean)));
        }
        let ra = self.value_expr(a, scope, used);
        let rb = self.value_expr(b, scope, used);
        let ((ca, ta), (cb, tb)) = (ra?, rb?);
        let want = match op {
            BinaryOp::Or | BinaryOp::And | BinaryOp::Xor => Some(Primitive::Boolean),
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                Some(Primitive::Number)
            }
            _ => None,
        };
        let result = match want {
            Some(w) => {
                if !self.check_operand(op.symbol(), w, ta, a.span)
                    || !self.check_operand(op.symbol(), w, tb, b.span)
                {
                    return None;
                }
                w
            }
            None => {
                if !self.check_comparison(op, ta, tb, span) {
                    return None;
                }
                Primitive::Boolean
            }
        };
        Some((self.combine(op, ca, cb, span)?, Some(result)))
    }

    #[inline(never)]
    fn regex_operand(&mut self, re: &ast::Expr) -> Option<Constraint> {
        let ast::ExprKind::Regex(src) = &re.kind else {
            return None;
        };
        match compile_regex(src) {
            Ok(p) => Some(leaf(ExprKind::Regex(p), re.span)),
            Err(msg) => {
                self.error(Diagnostic::error(
                    "kye::invalid-regex",
                    "invalid regular expression",
                    re.span,
                    msg,
                ));
                None
            }
        }
    }

    /// True when an operand of static type `t` (`None`: unknown) fits; reports otherwise.
    #[inline(never)]
    fn check_operand(
        &mut self,
        op: &str,
        want: Primitive,
        t: Option<Primitive>,
        span: Span,
    ) -> bool {
        match t {
            Some(t) if t != want => {
                self.type_mismatch(op, want, t, span);
                false
            }
            _ => true,
        }
    }

    #[inline(never)]
    fn check_comparison(
        &mut self,
        op: BinaryOp,
        ta: Option<Primitive>,
        tb: Option<Primitive>,
        span: Span,
    ) -> bool {
        let (Some(x), Some(y)) = (ta, tb) else {
            return true;
        };
        let ordered = !matches!(op, BinaryOp::Eq | BinaryOp::Ne);
        if x == y && !(ordered && x == Primitive::Boolean) {
            return true;
        }
        let msg = if x != y {
            format!("`{}` compares a {x} with a {y}", op.symbol())
        } else {
            format!("`{}` cannot order Boolean values", op.symbol())
        };
        self.error(
            Diagnostic::error("kye::type-mismatch", msg, span, format!("{x} and {y}"))
                .with_hint("compare values of the same type"),
        );
        false
    }

    fn type_mismatch(&mut self, op: &str, want: Primitive, found: Primitive, span: Span) {
        self.error(Diagnostic::error(
            "kye::type-mismatch",
            format!("`{op}` needs a {want}, found a {found}"),
            span,
            format!("this is a {found}"),
        ));
    }
}

/// `` `|` `` etc., for messages about type operators.
fn op_name(bin: Option<BinaryOp>, un: Option<UnaryOp>) -> &'static str {
    match (bin, un) {
        (Some(BinaryOp::Or), _) => "`|`",
        (Some(BinaryOp::And), _) => "`&`",
        (Some(BinaryOp::Xor), _) => "`^`",
        (Some(_), _) => "an operator",
        (None, Some(UnaryOp::Not)) => "`!`",
        (None, _) => "`-`",
    }
}

fn unary_symbol(op: UnaryOp) -> &'static str {
    match op {
        UnaryOp::Not => "!",
        UnaryOp::Neg => "-",
    }
}

fn ix_text(names: &[String]) -> String {
    format!("({})", names.join(", "))
}
