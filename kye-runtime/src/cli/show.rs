//! `kye show MODEL [--where 'edge = value'] [--limit N]`: stored records as a table, Markdown,
//! or JSON with nested edges (referenced records that are stored are embedded one level deep).

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::common::{cell, fail, open_reader, print_json, setup_failed, Table};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::store::{Filter, RecordQuery, StoreError};

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

/// Column order: the model's edges as declared when the model is linked in, else the keys of
/// the records in the order first seen.
fn columns(model: &str, records: &[Value]) -> Vec<String> {
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
    let mut cols: Vec<String> = Vec::new();
    for r in records {
        if let Some(obj) = r.as_object() {
            for k in obj.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    cols
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
    let lower = model.to_ascii_lowercase();
    let close = names
        .iter()
        .find(|n| n.to_ascii_lowercase() == lower)
        .or_else(|| {
            names
                .iter()
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
        let records = match store.records(&query) {
            Ok(r) => r,
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
        if g.format == Format::Json {
            print_json(&records);
            return ExitCode::from(EXIT_OK);
        }
        let cols = columns(&self.model, &records);
        let mut table = Table::new(cols.iter().cloned());
        for r in &records {
            table.row(
                cols.iter()
                    .map(|c| r.get(c).map(cell).unwrap_or_default())
                    .collect(),
            );
        }
        out_raw!("{}", table.render(g.format));
        if !g.quiet && g.format == Format::Text {
            out!(
                "{} {} record{}",
                records.len(),
                self.model,
                if records.len() == 1 { "" } else { "s" }
            );
        }
        ExitCode::from(EXIT_OK)
    }
}
