//! Rules every store applies the same way: drift paths and examples, the record object check,
//! and how a run left `running` by a dead process is shown.

use serde_json::Value;

use super::key::{self, canonical_json};
use super::{RunInfo, RunStatus, StoreError};

/// Folds array positions in a drift path: `types[1].slot` → `types[].slot`.
pub(crate) fn fold_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '[' {
            let mut digits = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    digits.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.peek() != Some(&']') {
                out.push_str(&digits);
            }
        }
    }
    out
}

/// A record as the JSON object every store writes, or the error naming the model.
pub(crate) fn record_object<'v>(
    model: &str,
    value: &'v Value,
) -> Result<&'v serde_json::Map<String, Value>, StoreError> {
    value.as_object().ok_or_else(|| StoreError::InvalidValue {
        model: model.to_string(),
        key: String::new(),
        edge: String::new(),
        message: format!(
            "a record must be a JSON object, got {}",
            key::cut(&key::canonical_json(value), 80)
        ),
    })
}

/// Why a run left `running` by a dead process is `interrupted`.
pub(crate) const DEAD_RUN: &str = "the process stopped before the run finished (killed or \
     crashed); counts are the key outcomes it had recorded";

/// Shows a run whose process died as interrupted (its counts already taken from its key
/// outcomes). Readers do this without writing; the next writer records it.
pub(crate) fn mark_dead(r: &mut RunInfo) {
    r.status = RunStatus::Interrupted;
    r.error = Some(DEAD_RUN.to_string());
}

/// Drift examples are cut to this many characters of JSON.
pub(crate) const EXAMPLE_MAX: usize = 1000;

/// The example stored for a drift sighting: the value, or a string holding its cut JSON.
pub(crate) fn drift_example(v: &Value) -> Value {
    let text = canonical_json(v);
    if text.chars().count() <= EXAMPLE_MAX {
        v.clone()
    } else {
        Value::String(key::cut(&text, EXAMPLE_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_paths_fold_positions() {
        assert_eq!(fold_path("types[1].slot"), "types[].slot");
        assert_eq!(fold_path("a[10][2].b"), "a[][].b");
        assert_eq!(fold_path("sprites.front"), "sprites.front");
        assert_eq!(fold_path("odd[x]"), "odd[x]");
    }
}
