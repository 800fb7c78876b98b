//! Between JSON and PostgreSQL: every value travels as text (bound as `text` or `text[]` and
//! cast in SQL to the column's type), and stored columns come back as text read as JSON.

use std::borrow::Cow;

use serde_json::Value;

use crate::store::layout::{EdgeLayout, Prim};
use crate::store::values::{edge_values, ColValue};
use crate::store::StoreError;

/// Why a text cannot be stored: PostgreSQL's `text` and `jsonb` cannot hold U+0000.
pub(crate) const NUL_MESSAGE: &str =
    "PostgreSQL cannot store the NUL character (U+0000) in text; the value was not stored";

/// The text of a column value, bound as a parameter and cast to the column's type; `None`
/// for NULL. A text holding NUL is an error.
pub(crate) fn col_text<'a>(c: &ColValue<'a>) -> Result<Option<Cow<'a, str>>, String> {
    let text: Cow<'a, str> = match c {
        ColValue::Null => return Ok(None),
        ColValue::Str(s) => Cow::Borrowed(*s),
        ColValue::Text(t) => Cow::Owned(t.clone()),
        ColValue::Int(i) => Cow::Owned(i.to_string()),
        // Shortest text that reads back as the same f64 (`1e308`, not 309 digits).
        ColValue::Real(f) => Cow::Owned(
            serde_json::Number::from_f64(*f)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "NaN".to_string()),
        ),
        ColValue::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
    };
    if text.contains('\0') || (matches!(c, ColValue::Text(_)) && has_nul_escape(&text)) {
        return Err(NUL_MESSAGE.to_string());
    }
    Ok(Some(text))
}

/// Whether JSON text holds the escape `\u0000` (a NUL PostgreSQL cannot store), not merely the
/// characters `\u0000` after an escaped backslash (`"\\u0000"` is a backslash and `u0000`).
fn has_nul_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    json.match_indices("\\u0000").any(|(i, _)| {
        // The backslashes ending at `i`: an odd run makes the last one an escape.
        let run = bytes[..=i]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        run % 2 == 1
    })
}

/// Appends the texts of an edge's columns for one value of the edge to `out`.
pub(crate) fn edge_texts<'a>(
    model: &str,
    e: &EdgeLayout,
    v: Option<&'a Value>,
    out: &mut Vec<Option<Cow<'a, str>>>,
) -> Result<(), StoreError> {
    let mut values = Vec::with_capacity(e.cols.len());
    edge_values(model, e, v, &mut values)?;
    for c in &values {
        out.push(col_text(c).map_err(|message| StoreError::InvalidValue {
            model: model.to_string(),
            key: String::new(),
            edge: e.name.clone(),
            message,
        })?);
    }
    Ok(())
}

/// A stored column (read as `::text`) as JSON.
pub(crate) fn from_text(t: Option<&str>, prim: Prim) -> Value {
    let Some(t) = t else {
        return Value::Null;
    };
    match prim {
        Prim::String => Value::String(t.to_string()),
        Prim::Boolean => Value::Bool(t == "true" || t == "t"),
        Prim::Number => match serde_json::from_str::<serde_json::Number>(t) {
            Ok(n) => Value::Number(n),
            Err(_) => Value::String(t.to_string()),
        },
        Prim::Json => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())),
    }
}

/// The same text for the same value: a column read back (`61.50`, 309 digits of `1e308`)
/// made comparable with the text kye binds.
pub(crate) fn normal_text(t: Option<&str>, prim: Prim) -> Option<String> {
    let t = t?;
    Some(match prim {
        Prim::Number => match from_text(Some(t), prim) {
            Value::Number(n) => match crate::store::values::number_value(&n) {
                ColValue::Int(i) => i.to_string(),
                ColValue::Real(f) => serde_json::Number::from_f64(f)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| t.to_string()),
                _ => t.to_string(),
            },
            _ => t.to_string(),
        },
        Prim::Boolean => (t == "true" || t == "t").to_string(),
        _ => t.to_string(),
    })
}

/// kye's own texts (fetcher names, reasons, drift paths, requests): a NUL, which PostgreSQL
/// cannot store, is shown as `␀` (U+2400).
pub(crate) fn kye_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{2400}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A JSON document as `json` text: `\u0000` escapes are fine there (not in `jsonb`).
pub(crate) fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_as_text() {
        for v in [61.5, 1e308, -1e308, 5e-324] {
            let t = col_text(&crate::store::values::number_value(
                &serde_json::Number::from_f64(v).unwrap(),
            ))
            .unwrap()
            .unwrap();
            assert_eq!(from_text(Some(&t), Prim::Number), serde_json::json!(v));
        }
        assert_eq!(normal_text(Some("25"), Prim::Number).as_deref(), Some("25"));
        assert_eq!(
            normal_text(Some("61.50"), Prim::Number).as_deref(),
            Some("61.5")
        );
        assert!(col_text(&ColValue::Str("a\0b")).is_err());
        assert_eq!(kye_text("a\0b"), "a\u{2400}b");
    }
}

#[cfg(test)]
mod nul_tests {
    use super::has_nul_escape;

    #[test]
    fn only_a_real_nul_escape_is_refused() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(has_nul_escape(r#"["\\\u0000"]"#)); // a backslash, then a NUL
        assert!(!has_nul_escape(r#"{"a":"x\\u0000y"}"#)); // a backslash, then "u0000"
        assert!(!has_nul_escape(r#"{"a":"plain"}"#));
    }
}
