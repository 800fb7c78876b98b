//! Text rendering of validation reports for people.

use std::fmt::Write as _;

use kye_lang::validate::{BatchReport, ValidationError};
use kye_lang::{Diagnostic, Label, Schema, Severity};

pub(crate) const RED: &str = "\x1b[1;31m";
pub(crate) const YELLOW: &str = "\x1b[1;33m";
pub(crate) const GREEN: &str = "\x1b[1;32m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Wraps `text` in an ANSI style when `color`.
pub(crate) fn paint(text: &str, style: &str, color: bool) -> String {
    if color {
        format!("{style}{text}{RESET}")
    } else {
        text.to_string()
    }
}

/// Errors shown in text output unless `-v` is given.
const SHOWN: usize = 50;

/// One error or warning: `error[Kind] message`, then the schema rule it comes from with a
/// caret under it (kye-lang's renderer, as `kye check` shows schema errors).
fn one(out: &mut String, e: &ValidationError, schema: &Schema, severity: Severity, color: bool) {
    let (label, style) = match severity {
        Severity::Error => ("error", RED),
        Severity::Warning => ("warning", YELLOW),
    };
    let head = paint(&format!("{label}[{}]", e.kind), style, color);
    let _ = writeln!(out, "{head} {}", paint(&e.message, BOLD, color));
    if let Some(span) = e.span {
        let rule = Diagnostic {
            severity,
            code: "",
            message: String::new(),
            primary: Label {
                span,
                message: String::new(),
            },
            secondary: Vec::new(),
            hint: None,
        };
        out.push_str(&rule.render_source(&schema.sources, color, true));
    }
}

/// The whole report, grouped by kind and edge, errors first.
pub(crate) fn render(
    report: &BatchReport,
    schema: &Schema,
    data: &str,
    model: &str,
    verbose: bool,
    color: bool,
) -> String {
    let mut out = String::new();
    let mut errors: Vec<&ValidationError> = report.errors.iter().collect();
    errors.sort_by(|a, b| (a.kind, &a.edges).cmp(&(b.kind, &b.edges)));
    let mut warnings: Vec<&ValidationError> = report.warnings.iter().collect();
    warnings.sort_by(|a, b| (a.kind, &a.edges).cmp(&(b.kind, &b.edges)));
    let limit = if verbose { usize::MAX } else { SHOWN };
    for e in errors.iter().take(limit) {
        one(&mut out, e, schema, Severity::Error, color);
        out.push('\n');
    }
    if errors.len() > limit {
        let _ = writeln!(
            out,
            "... and {} more errors (-v shows all; --format json lists all)\n",
            errors.len() - limit
        );
    }
    for w in warnings.iter().take(limit) {
        one(&mut out, w, schema, Severity::Warning, color);
        out.push('\n');
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let summary = if report.valid {
        paint(&format!("{data}: valid"), GREEN, color)
    } else {
        paint(
            &format!("{data}: {}", plural(report.errors.len(), "error")),
            RED,
            color,
        )
    };
    let _ = writeln!(
        out,
        "{summary}{} in {} of {model} ({})",
        if report.warnings.is_empty() {
            String::new()
        } else {
            format!(", {}", plural(report.warnings.len(), "warning"))
        },
        plural(report.rows, "row"),
        plural(report.records, "record"),
    );
    out
}
