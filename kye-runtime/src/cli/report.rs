//! Text rendering of validation reports for people.

use std::fmt::Write as _;

use kye_lang::validate::{BatchReport, ValidationError};
use kye_lang::Schema;

pub(crate) const RED: &str = "\x1b[1;31m";
pub(crate) const YELLOW: &str = "\x1b[1;33m";
pub(crate) const BLUE: &str = "\x1b[1;34m";
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

fn one(
    out: &mut String,
    e: &ValidationError,
    schema: &Schema,
    label: &str,
    style: &str,
    color: bool,
) {
    let head = paint(&format!("{label}[{}]", e.kind), style, color);
    let _ = writeln!(out, "{head} {}", paint(&e.message, BOLD, color));
    if let Some(span) = e.span {
        if let Some(file) = schema.sources.get(span.file) {
            let lc = file.line_col(span.start);
            let num = lc.line.to_string();
            let pad = " ".repeat(num.len());
            let _ = writeln!(
                out,
                "{pad}{} {}:{}",
                paint("-->", BLUE, color),
                file.name,
                lc
            );
            let _ = writeln!(out, "{pad} {}", paint("|", BLUE, color));
            let _ = writeln!(
                out,
                "{} {} {}",
                paint(&num, BLUE, color),
                paint("|", BLUE, color),
                file.line_text(lc.line)
            );
            // A caret under the rule (to the end of its first line).
            let line = file.line_text(lc.line);
            let end = file.line_col(span.end);
            let width = if end.line == lc.line {
                end.col.saturating_sub(lc.col).max(1)
            } else {
                line.chars().count().saturating_sub(lc.col - 1).max(1)
            };
            let carets = "^".repeat(width);
            let _ = writeln!(
                out,
                "{pad} {} {}{}",
                paint("|", BLUE, color),
                " ".repeat(lc.col - 1),
                paint(&carets, style, color)
            );
        }
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
        one(&mut out, e, schema, "error", RED, color);
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
        one(&mut out, w, schema, "warning", YELLOW, color);
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
