//! `kye show MODEL [--where 'edge = value'] [--limit N]`: stored records as a table, Markdown,
//! or JSON with nested edges (referenced records that are stored are embedded one level deep).

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use std::io::Write;

use super::common::{
    cell, fail, markdown_header, markdown_row, open_reader, setup_failed, text_cell, text_header,
    text_line, text_widths, widen,
};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::store::{Filter, RecordQuery, StoreError, StoreRead};

/// Arguments of `kye show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The model, e.g. `Pokemon`.
    #[arg(value_name = "MODEL")]
    pub model: String,
    /// Only records whose edge has this value: `name = pikachu`, `types = fire`.
    #[arg(long = "where", value_name = "EDGE = VALUE")]
    pub filter: Option<String>,
    /// At most N records (in primary-key order).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl ShowArgs {
    /// The first `limit` records of `model`.
    pub fn new(model: impl Into<String>, limit: Option<usize>) -> Self {
        ShowArgs {
            model: model.into(),
            filter: None,
            limit,
        }
    }
}

/// Column order: the model's edges as declared when the model is linked in, else as the
/// store recorded them (schema order, also in the standalone `kye`), else the keys of the
/// first record.
fn columns(model: &str, store: &dyn StoreRead, first: Option<&Value>) -> Vec<String> {
    if let Some(m) = crate::registry::registry()
        .ok()
        .and_then(|r| r.model(model))
    {
        return m
            .definition()
            .edges
            .iter()
            .map(|e| e.name.clone())
            .collect();
    }
    if let Some(names) = store.edge_names(model) {
        return names;
    }
    first
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The cells of one record in `cols` order.
fn cells(cols: &[String], r: &Value) -> Vec<String> {
    cols.iter()
        .map(|c| r.get(c).map(cell).unwrap_or_default())
        .collect()
}

/// Stops reading the store when stdout is closed (`kye show ... | head`).
fn closed(e: std::io::Error) -> StoreError {
    StoreError::Io {
        action: "cannot write to",
        path: "stdout".into(),
        source: e,
    }
}

/// Prints the records of `query` as `format` while reading them: memory does not grow with
/// the number of records. A text table is read twice (column widths first). Returns how
/// many records were printed.
fn print_records(
    store: &dyn StoreRead,
    query: &RecordQuery,
    format: Format,
    out: &mut dyn Write,
) -> Result<usize, StoreError> {
    let mut n = 0usize;
    match format {
        Format::Json => {
            store.for_each_record(query, &mut |r| {
                let text = serde_json::to_string_pretty(&r).unwrap_or_else(|_| "null".into());
                let sep = if n == 0 { "[\n" } else { ",\n" };
                n += 1;
                let indented = text.replace('\n', "\n  ");
                write!(out, "{sep}  {indented}").map_err(closed)
            })?;
            writeln!(out, "{}", if n == 0 { "[]" } else { "\n]" }).map_err(closed)?;
        }
        Format::Markdown => {
            let mut cols: Option<Vec<String>> = None;
            store.for_each_record(query, &mut |r| {
                let cols = cols.get_or_insert_with(|| columns(&query.model, store, Some(&r)));
                if n == 0 {
                    out.write_all(markdown_header(cols).as_bytes())
                        .map_err(closed)?;
                }
                n += 1;
                writeln!(out, "{}", markdown_row(&cells(cols, &r))).map_err(closed)
            })?;
            if n == 0 {
                let cols = columns(&query.model, store, None);
                out.write_all(markdown_header(&cols).as_bytes())
                    .map_err(closed)?;
            }
        }
        Format::Text => {
            let mut cols: Option<Vec<String>> = None;
            let mut widths: Vec<usize> = Vec::new();
            store.for_each_record(query, &mut |r| {
                if cols.is_none() {
                    let c = columns(&query.model, store, Some(&r));
                    widths = text_widths(&c);
                    cols = Some(c);
                }
                let row: Vec<String> = cells(cols.as_deref().unwrap_or_default(), &r)
                    .iter()
                    .map(|c| text_cell(c))
                    .collect();
                widen(&mut widths, &row);
                Ok(())
            })?;
            let cols = cols.unwrap_or_else(|| columns(&query.model, store, None));
            if widths.is_empty() {
                widths = text_widths(&cols);
            }
            out.write_all(text_header(&widths, &cols).as_bytes())
                .map_err(closed)?;
            store.for_each_record(query, &mut |r| {
                let row: Vec<String> = cells(&cols, &r).iter().map(|c| text_cell(c)).collect();
                n += 1;
                writeln!(out, "{}", text_line(&widths, &row)).map_err(closed)
            })?;
        }
    }
    out.flush().map_err(closed)?;
    Ok(n)
}

/// Adds "did you mean" to an unknown model when the registry knows a close name.
fn unknown_model_hint(model: &str) -> Option<String> {
    let registry = crate::registry::registry().ok()?;
    let names: Vec<&str> = registry.models().map(|m| m.name()).collect();
    if names.contains(&model) {
        return Some(format!(
            "nothing of {model} has been stored yet in this store; fetch some first"
        ));
    }
    // A typo (kye-lang's did_you_mean, as for requests and schemas), else a name it begins.
    let lower = model.to_ascii_lowercase();
    let close = kye_lang::diagnostic::did_you_mean(model, names.iter().copied()).or_else(|| {
        names
            .iter()
            .copied()
            .find(|n| n.to_ascii_lowercase().starts_with(&lower))
    });
    match close {
        Some(n) => Some(format!("did you mean `{n}`?")),
        None if !names.is_empty() => Some(format!("models: {}", names.join(", "))),
        None => None,
    }
}

impl Run for ShowArgs {
    fn run(self, g: &Global) -> ExitCode {
        let store = match open_reader(g) {
            Ok(s) => s,
            Err(e) => return setup_failed(g, &e),
        };
        let mut query = RecordQuery::new(self.model.clone());
        if let Some(text) = &self.filter {
            match Filter::parse(text) {
                Ok(f) => query = query.filter(f),
                Err(e) => return fail(g, &e, EXIT_USAGE),
            }
        }
        if let Some(n) = self.limit {
            query = query.limit(n);
        }
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let n = match print_records(store.as_ref(), &query, g.format, &mut out) {
            Ok(n) => n,
            // stdout closed (`| head`): stop quietly.
            Err(StoreError::Io { path, .. }) if path.as_os_str() == "stdout" => {
                return ExitCode::from(EXIT_OK)
            }
            Err(e @ StoreError::UnknownModel { .. }) => {
                let mut msg = e.to_string();
                if let Some(hint) = unknown_model_hint(&self.model) {
                    msg.push_str("\nhelp: ");
                    msg.push_str(&hint);
                }
                return super::common::fail_msg(g, &msg, EXIT_USAGE);
            }
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        drop(out);
        if !g.quiet && g.format == Format::Text {
            out!(
                "{} {} record{}",
                n,
                self.model,
                if n == 1 { "" } else { "s" }
            );
        }
        ExitCode::from(EXIT_OK)
    }
}
