//! Schema diagnostics: errors and warnings with a span, rendered miette-style
//! (`file:line:col`, the source line and a caret under the span, then a hint).

use crate::span::{SourceMap, Span};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The schema cannot be used.
    Error,
    /// The schema is usable but probably not what was meant.
    Warning,
}

/// A span with a short message, shown under the source line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// What the label points at.
    pub span: Span,
    /// Text shown next to the caret (may be empty).
    pub message: String,
}

/// One problem found in a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable machine-readable code, e.g. `kye::unknown-type`.
    pub code: &'static str,
    /// One-line description of the problem.
    pub message: String,
    /// The main location.
    pub primary: Label,
    /// Other related locations (e.g. the first definition of a duplicate).
    pub secondary: Vec<Label>,
    /// A suggestion, e.g. `did you mean 'Number'?`.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `span` with a label text under the caret.
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: Label {
                span,
                message: label.into(),
            },
            secondary: Vec::new(),
            hint: None,
        }
    }

    /// A warning at `span` with a label text under the caret.
    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message, span, label)
        }
    }

    /// Adds a `help:` line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a related location (e.g. the first definition of a duplicate).
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic miette/rustc-style: a header with the code, `--> file:line:col`,
    /// the source lines with carets under the labelled spans, and the hint. With `color`,
    /// ANSI escapes highlight the parts (no terminal detection happens here).
    ///
    /// ```
    /// use kye_lang::compile_str;
    /// let err = compile_str("models.kye", "User(id) {\n  id: Numbr\n}\n").unwrap_err();
    /// let text = err.diagnostics[0].render(&err.sources, false);
    /// assert!(text.starts_with("error[kye::unknown-type]: unknown type `Numbr`\n --> models.kye:2:7\n"));
    /// ```
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        render::render(self, sources, color)
    }

    /// The part of [`Diagnostic::render`] under its headline: per file a `--> file:line:col`
    /// line (`:::` for files other than the primary's), the source lines with carets under the
    /// labelled spans (`^` for the primary, `-` for secondaries) and their texts, then the hint.
    /// The one caret renderer of kye: callers with a headline of their own (a validation
    /// report, a compile error of `kye::models!`) put this under it.
    ///
    /// `with_location: false` leaves out the primary file's `-->` line, for a headline that
    /// already says where.
    ///
    /// ```
    /// use kye_lang::compile_str;
    /// let err = compile_str("models.kye", "User(id) {\n  id: Numbr\n}\n").unwrap_err();
    /// let d = &err.diagnostics[0];
    /// assert_eq!(
    ///     d.render_source(&err.sources, false, true),
    ///     " --> models.kye:2:7\n  |\n2 |   id: Numbr\n  |       ^^^^^ not a model, alias or built-in type\n  |\n  = help: did you mean `Number`?\n",
    /// );
    /// assert!(d.render(&err.sources, false).ends_with(&d.render_source(&err.sources, false, true)));
    /// assert!(d.render_source(&err.sources, false, false).starts_with("  |\n2 |   id: Numbr\n"));
    /// ```
    pub fn render_source(&self, sources: &SourceMap, color: bool, with_location: bool) -> String {
        render::source(self, sources, color, with_location)
    }
}

/// A schema that failed to compile: every diagnostic found (errors first, then warnings, each
/// in source order) and the sources they point into.
///
/// `Display` renders all diagnostics without colour; [`CompileError::render`] can add ANSI colour.
#[derive(Debug, Clone)]
pub struct CompileError {
    /// The source files the diagnostics point into.
    pub sources: SourceMap,
    /// All diagnostics; at least one is an error.
    pub diagnostics: Vec<Diagnostic>,
}

impl CompileError {
    /// Renders every diagnostic, rustc-style, optionally with ANSI colour.
    pub fn render(&self, color: bool) -> String {
        render_all(&self.diagnostics, &self.sources, color)
    }

    /// The error diagnostics only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for CompileError {}

/// Optimal-string-alignment edit distance (insertions, deletions, substitutions and swaps of
/// two neighbouring characters each cost 1), counted in chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: i-2, i-1, i.
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a plausible typo: a
/// case-insensitive match wins, otherwise the smallest edit distance up to a third of the
/// name's length (at least 1). Ties go to the candidate listed first.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = name.chars().count();
    if len > 64 {
        return None; // no typo suggestions for absurd names (keeps this cheap)
    }
    let limit = (len / 3).max(1);
    let lower = name.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == name || c.chars().count().abs_diff(len) > limit {
            continue;
        }
        let d = if c.to_ascii_lowercase() == lower {
            0
        } else {
            edit_distance(name, c)
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Renders several diagnostics, separated by blank lines.
pub fn render_all(diagnostics: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.render(sources, color));
    }
    out
}

mod render {
    use super::{Diagnostic, Severity};
    use crate::span::{SourceMap, Span};
    use std::fmt::Write;

    const RESET: &str = "\x1b[0m";
    const BOLD: &str = "\x1b[1m";
    const RED: &str = "\x1b[1;31m";
    const YELLOW: &str = "\x1b[1;33m";
    const BLUE: &str = "\x1b[1;34m";
    const CYAN: &str = "\x1b[1;36m";

    struct Paint {
        on: bool,
    }

    impl Paint {
        fn p(&self, style: &str, text: &str) -> String {
            if self.on && !text.is_empty() {
                format!("{style}{text}{RESET}")
            } else {
                text.to_string()
            }
        }
    }

    /// Display width of `text` with tabs expanded to 4 columns (other chars count 1).
    fn width(text: &str) -> usize {
        text.chars().map(|c| if c == '\t' { 4 } else { 1 }).sum()
    }

    fn expand_tabs(text: &str) -> String {
        text.replace('\t', "    ")
    }

    struct Mark<'a> {
        line: usize,
        col_start: usize,
        col_len: usize,
        message: &'a str,
        primary: bool,
    }

    /// Where a span sits on its first line, in display columns.
    fn mark<'a>(
        sources: &SourceMap,
        span: Span,
        message: &'a str,
        primary: bool,
    ) -> Option<Mark<'a>> {
        let file = sources.get(span.file)?;
        let lc = file.line_col(span.start);
        let line_text = file.line_text(lc.line);
        let start_byte = (span.start as usize).min(file.text.len());
        let line_start = file
            .text
            .get(..start_byte)
            .and_then(|t| t.rfind('\n').map(|i| i + 1))
            .unwrap_or(0);
        let before = file.text.get(line_start..start_byte).unwrap_or("");
        let before = before.trim_end_matches('\r');
        let col_start = width(before);
        let span_end = (span.end as usize).min(line_start + line_text.len());
        let covered = file
            .text
            .get(start_byte.min(span_end)..span_end)
            .unwrap_or("");
        Some(Mark {
            line: lc.line,
            col_start,
            col_len: width(covered).max(1),
            message,
            primary,
        })
    }

    fn style(severity: Severity) -> (&'static str, &'static str) {
        match severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
        }
    }

    pub(super) fn render(d: &Diagnostic, sources: &SourceMap, color: bool) -> String {
        let paint = Paint { on: color };
        let (word, style) = style(d.severity);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{}",
            paint.p(style, &format!("{word}[{}]", d.code)),
            paint.p(BOLD, &format!(": {}", d.message))
        );
        out.push_str(&source(d, sources, color, true));
        out
    }

    pub(super) fn source(
        d: &Diagnostic,
        sources: &SourceMap,
        color: bool,
        with_location: bool,
    ) -> String {
        let paint = Paint { on: color };
        let (_, style) = style(d.severity);
        let mut out = String::new();

        // Group labels by file, the primary's file first.
        let mut labels = vec![(&d.primary, true)];
        labels.extend(d.secondary.iter().map(|l| (l, false)));
        let mut files: Vec<crate::span::FileId> = Vec::new();
        for (l, _) in &labels {
            if !files.contains(&l.span.file) {
                files.push(l.span.file);
            }
        }
        let max_line = labels
            .iter()
            .filter_map(|(l, _)| {
                sources
                    .get(l.span.file)
                    .map(|f| f.line_col(l.span.start).line)
            })
            .max()
            .unwrap_or(1);
        let gutter = max_line.to_string().len();
        let pad = " ".repeat(gutter);
        let bar = paint.p(BLUE, "|");

        for (fi, file_id) in files.iter().enumerate() {
            let Some(file) = sources.get(*file_id) else {
                continue;
            };
            let mut marks: Vec<Mark> = labels
                .iter()
                .filter(|(l, _)| l.span.file == *file_id)
                .filter_map(|(l, primary)| mark(sources, l.span, &l.message, *primary))
                .collect();
            // The location shown is the primary's, or the first label's in other files.
            let anchor = labels
                .iter()
                .find(|(l, _)| l.span.file == *file_id)
                .map(|(l, _)| file.line_col(l.span.start));
            if let Some(lc) = anchor.filter(|_| with_location || fi > 0) {
                let arrow = if fi == 0 { "-->" } else { ":::" };
                let _ = writeln!(out, "{pad}{} {}:{}", paint.p(BLUE, arrow), file.name, lc);
            }
            let _ = writeln!(out, "{pad} {bar}");
            marks.sort_by_key(|m| (m.line, m.col_start, !m.primary));
            let mut last_line: Option<usize> = None;
            for m in &marks {
                if last_line != Some(m.line) {
                    if let Some(prev) = last_line {
                        if m.line > prev + 1 {
                            let _ = writeln!(out, "{}", paint.p(BLUE, "..."));
                        }
                    }
                    let text = expand_tabs(file.line_text(m.line));
                    let num = format!("{:>gutter$}", m.line);
                    if text.is_empty() {
                        let _ = writeln!(out, "{} {bar}", paint.p(BLUE, &num));
                    } else {
                        let _ = writeln!(out, "{} {bar} {text}", paint.p(BLUE, &num));
                    }
                    last_line = Some(m.line);
                }
                let (ch, st) = if m.primary { ('^', style) } else { ('-', BLUE) };
                let underline: String = std::iter::repeat_n(ch, m.col_len).collect();
                let mut line = format!(
                    "{pad} {bar} {}{}",
                    " ".repeat(m.col_start),
                    paint.p(st, &underline)
                );
                if !m.message.is_empty() {
                    line.push(' ');
                    line.push_str(&paint.p(st, m.message));
                }
                let _ = writeln!(out, "{line}");
            }
        }
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(out, "{pad} {} {hint}", paint.p(CYAN, "= help:"));
        }
        out
    }
}
