//! Scalar values during validation: coercion from JSON and from text cells, comparison,
//! hashing into compact keys, and evaluation of constraints and assertions.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::hash::{BuildHasher, Hasher};

use crate::schema::{BinaryOp, Expr, ExprKind, Literal, Primitive, UnaryOp};

/// A scalar value being validated. `Missing` is SQL's NULL: it propagates through operators, and
/// an assertion that evaluates to `Missing` is not applicable (neither passes nor fails).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Missing,
    Num(f64),
    Bool(bool),
    Str(Cow<'a, str>),
}

impl Val<'_> {
    /// Text for messages.
    pub(crate) fn show(&self) -> String {
        match self {
            Val::Missing => "null".to_string(),
            Val::Num(n) => fmt_num(*n),
            Val::Bool(b) => b.to_string(),
            Val::Str(s) => super::error::cut(s),
        }
    }

    /// The normalized JSON value.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Val::Missing => serde_json::Value::Null,
            Val::Num(n) => num_json(*n),
            Val::Bool(b) => serde_json::Value::Bool(*b),
            Val::Str(s) => serde_json::Value::String(s.to_string()),
        }
    }

    pub(crate) fn into_owned(self) -> Val<'static> {
        match self {
            Val::Missing => Val::Missing,
            Val::Num(n) => Val::Num(n),
            Val::Bool(b) => Val::Bool(b),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
        }
    }
}

/// Integers as integers (`25`, not `25.0`), everything else as f64.
pub(crate) fn num_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Parses a number written as text: surrounding spaces allowed, must be finite.
pub(crate) fn parse_num(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    // Rust accepts "inf", "NaN", "infinity": none of them is a number a data file means.
    match t.as_bytes()[t.len() - 1] {
        b'0'..=b'9' | b'.' => {}
        _ => return None,
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// `true`/`false` in any case, and `1`/`0`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// Coerces a JSON scalar to `prim`. `Ok(Missing)` for `null`; `Err(())` when it is not of the type.
pub(crate) fn coerce_json(prim: Primitive, v: &serde_json::Value) -> Result<Val<'_>, ()> {
    use serde_json::Value as J;
    match (prim, v) {
        (_, J::Null) => Ok(Val::Missing),
        (Primitive::Number, J::Number(n)) => n.as_f64().map(Val::Num).ok_or(()),
        (Primitive::Number, J::String(s)) => parse_num(s).map(Val::Num).ok_or(()),
        (Primitive::String, J::String(s)) => Ok(Val::Str(Cow::Borrowed(s))),
        (Primitive::String, J::Number(n)) => Ok(Val::Str(Cow::Owned(n.to_string()))),
        (Primitive::Boolean, J::Bool(b)) => Ok(Val::Bool(*b)),
        (Primitive::Boolean, J::String(s)) => parse_bool(s).map(Val::Bool).ok_or(()),
        (Primitive::Boolean, J::Number(n)) => match n.as_u64() {
            Some(1) => Ok(Val::Bool(true)),
            Some(0) => Ok(Val::Bool(false)),
            _ => Err(()),
        },
        _ => Err(()),
    }
}

/// Coerces a text cell (CSV) to `prim`. The caller treats an empty cell as missing.
pub(crate) fn coerce_text(prim: Primitive, s: &str) -> Result<Val<'_>, ()> {
    match prim {
        Primitive::String => Ok(Val::Str(Cow::Borrowed(s))),
        Primitive::Number => parse_num(s).map(Val::Num).ok_or(()),
        Primitive::Boolean => parse_bool(s).map(Val::Bool).ok_or(()),
    }
}

/// Equality across types the way kye compares: a string that reads as a number equals that number.
pub(crate) fn val_eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Str(s)) | (Val::Str(s), Val::Num(x)) => parse_num(s) == Some(*x),
        _ => false,
    }
}

fn val_cmp(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Num(x), Val::Str(s)) => parse_num(s).and_then(|y| x.partial_cmp(&y)),
        (Val::Str(s), Val::Num(y)) => parse_num(s).and_then(|x| x.partial_cmp(y)),
        _ => None,
    }
}

/// Truthiness of an assertion result: `None` when not applicable (missing).
pub(crate) fn truthy(v: &Val) -> Option<bool> {
    match v {
        Val::Missing => None,
        Val::Bool(b) => Some(*b),
        Val::Num(n) => Some(*n != 0.0),
        Val::Str(s) => Some(!s.is_empty()),
    }
}

fn lit(l: &Literal) -> Val<'_> {
    match l {
        Literal::String(s) => Val::Str(Cow::Borrowed(s)),
        Literal::Number(n) => Val::Num(*n),
        Literal::Boolean(b) => Val::Bool(*b),
    }
}

/// Evaluates an expression. `this` is the value inside a type constraint; `edge` looks up the
/// value of an edge inside an assertion.
pub(crate) fn eval<'a>(e: &'a Expr, this: &Val<'a>, edge: &dyn Fn(&str) -> Val<'a>) -> Val<'a> {
    match &e.kind {
        ExprKind::This => this.clone(),
        ExprKind::Edge(name) => edge(name),
        ExprKind::Literal(l) => lit(l),
        ExprKind::Regex(p) => match this {
            Val::Str(s) => Val::Bool(p.regex.is_match(s)),
            Val::Missing => Val::Missing,
            _ => Val::Bool(false),
        },
        ExprKind::Unary(op, x) => {
            let v = eval(x, this, edge);
            match (op, v) {
                (_, Val::Missing) => Val::Missing,
                (UnaryOp::Not, v) => truthy(&v).map(|b| Val::Bool(!b)).unwrap_or(Val::Missing),
                (UnaryOp::Neg, Val::Num(n)) => Val::Num(-n),
                (UnaryOp::Neg, Val::Str(s)) => {
                    parse_num(&s).map(|n| Val::Num(-n)).unwrap_or(Val::Missing)
                }
                (UnaryOp::Neg, _) => Val::Missing,
            }
        }
        ExprKind::Binary(op @ (BinaryOp::Eq | BinaryOp::Ne), l, r)
            if matches!(l.kind, ExprKind::Regex(_)) || matches!(r.kind, ExprKind::Regex(_)) =>
        {
            // `x == /re/`: x matches the (whole-value) pattern.
            let (other, ExprKind::Regex(p)) = (if matches!(r.kind, ExprKind::Regex(_)) {
                (l, &r.kind)
            } else {
                (r, &l.kind)
            }) else {
                return Val::Missing;
            };
            match eval(other, this, edge) {
                Val::Missing => Val::Missing,
                Val::Str(s) => Val::Bool(p.regex.is_match(&s) == (*op == BinaryOp::Eq)),
                Val::Num(n) => Val::Bool(p.regex.is_match(&fmt_num(n)) == (*op == BinaryOp::Eq)),
                Val::Bool(_) => Val::Bool(*op == BinaryOp::Ne),
            }
        }
        ExprKind::Binary(op, l, r) => {
            let a = eval(l, this, edge);
            // Short-circuit the logical operators like SQL's three-valued logic.
            match op {
                BinaryOp::And if truthy(&a) == Some(false) => return Val::Bool(false),
                BinaryOp::Or if truthy(&a) == Some(true) => return Val::Bool(true),
                _ => {}
            }
            let b = eval(r, this, edge);
            binary(*op, a, b)
        }
    }
}

fn binary<'a>(op: BinaryOp, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    use BinaryOp::*;
    match op {
        And | Or | Xor => match (truthy(&a), truthy(&b)) {
            (Some(x), Some(y)) => Val::Bool(match op {
                And => x && y,
                Or => x || y,
                _ => x ^ y,
            }),
            (None, Some(false)) | (Some(false), None) if op == And => Val::Bool(false),
            (None, Some(true)) | (Some(true), None) if op == Or => Val::Bool(true),
            _ => Val::Missing,
        },
        _ if a == Val::Missing || b == Val::Missing => Val::Missing,
        Eq => Val::Bool(val_eq(&a, &b)),
        Ne => Val::Bool(!val_eq(&a, &b)),
        Lt | Le | Gt | Ge => match val_cmp(&a, &b) {
            None => Val::Bool(false),
            Some(o) => Val::Bool(match op {
                Lt => o == Ordering::Less,
                Le => o != Ordering::Greater,
                Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }),
        },
        Add => match (&a, &b) {
            (Val::Str(x), Val::Str(y)) => Val::Str(Cow::Owned(format!("{x}{y}"))),
            _ => arith(op, &a, &b),
        },
        Sub | Mul | Div | Mod => arith(op, &a, &b),
    }
}

fn as_num(v: &Val) -> Option<f64> {
    match v {
        Val::Num(n) => Some(*n),
        Val::Str(s) => parse_num(s),
        _ => None,
    }
}

fn arith<'a>(op: BinaryOp, a: &Val<'a>, b: &Val<'a>) -> Val<'a> {
    let (Some(x), Some(y)) = (as_num(a), as_num(b)) else {
        return Val::Missing;
    };
    Val::Num(match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        _ => x % y,
    })
}

/// Does `v` satisfy a type constraint? In a constraint a bare literal means "equals this
/// literal" and a regex means "matches", so `("A" | "B") & !"C"` reads as an enum.
pub(crate) fn satisfies(c: &Expr, v: &Val) -> bool {
    match &c.kind {
        ExprKind::Literal(l) => val_eq(v, &lit(l)),
        ExprKind::Regex(p) => matches!(v, Val::Str(s) if p.regex.is_match(s)),
        ExprKind::Unary(UnaryOp::Not, x) => !satisfies(x, v),
        ExprKind::Binary(BinaryOp::And, a, b) => satisfies(a, v) && satisfies(b, v),
        ExprKind::Binary(BinaryOp::Or, a, b) => satisfies(a, v) || satisfies(b, v),
        ExprKind::Binary(BinaryOp::Xor, a, b) => satisfies(a, v) ^ satisfies(b, v),
        _ => {
            let this = v.clone();
            truthy(&eval(c, &this, &|_| Val::Missing)) == Some(true)
        }
    }
}

const SEED: u64 = 0x6b79_655f_6b65_7973; // "kye_keys"

/// A 64-bit hasher with a fixed seed, so keys are stable within and across runs.
pub(crate) fn hasher() -> impl Hasher {
    foldhash::quality::FixedState::with_seed(SEED).build_hasher()
}

/// Feeds a value into a hasher. Numbers hash by value (`1`, `1.0` and `"1"` read as Number are
/// one key); strings and numbers never collide by construction (a tag byte comes first).
pub(crate) fn hash_val(h: &mut impl Hasher, v: &Val) {
    match v {
        Val::Missing => h.write_u8(0),
        Val::Num(n) => {
            h.write_u8(1);
            h.write_u64((n + 0.0).to_bits());
        }
        Val::Bool(b) => {
            h.write_u8(2);
            h.write_u8(*b as u8);
        }
        Val::Str(s) => {
            h.write_u8(3);
            h.write_usize(s.len());
            h.write(s.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_from_text_but_not_words() {
        assert_eq!(parse_num(" 1.5 "), Some(1.5));
        assert_eq!(parse_num("-14"), Some(-14.0));
        assert_eq!(parse_num("1e3"), Some(1000.0));
        assert_eq!(parse_num("inf"), None);
        assert_eq!(parse_num("NaN"), None);
        assert_eq!(parse_num("not_a_number"), None);
        assert_eq!(parse_num(""), None);
    }

    #[test]
    fn json_coercion_follows_the_original() {
        use serde_json::json;
        assert_eq!(
            coerce_json(Primitive::Number, &json!("1")),
            Ok(Val::Num(1.0))
        );
        assert_eq!(
            coerce_json(Primitive::String, &json!(12)),
            Ok(Val::Str(Cow::Owned("12".into())))
        );
        assert!(coerce_json(Primitive::Boolean, &json!("sure")).is_err());
        assert!(coerce_json(Primitive::String, &json!(true)).is_err());
        assert_eq!(
            coerce_json(Primitive::Boolean, &json!("TRUE")),
            Ok(Val::Bool(true))
        );
    }

    #[test]
    fn equal_numbers_hash_equal() {
        let h = |v: &Val| {
            let mut h = hasher();
            hash_val(&mut h, v);
            h.finish()
        };
        assert_eq!(h(&Val::Num(1.0)), h(&Val::Num(parse_num("1.0").unwrap())));
        assert_eq!(h(&Val::Num(0.0)), h(&Val::Num(-0.0)));
        assert_ne!(h(&Val::Num(1.0)), h(&Val::Str(Cow::Borrowed("1"))));
    }
}
