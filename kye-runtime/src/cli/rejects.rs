//! `kye rejects [--run ID] [--limit N]`: quarantined payloads with their validation errors,
//! newest first.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::common::{fail, open_reader, print_json, setup_failed};
use super::report::{paint, RED};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::store::{RunId, StoreError};

/// Arguments of `kye rejects`.
#[derive(Debug, Clone, Args)]
pub struct RejectsArgs {
    /// Only the rejects of this run (`runs` lists them).
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// At most N rejects, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// Payloads are cut to this many characters in text output unless `-v`.
const PAYLOAD_SHOWN: usize = 300;

/// One structured validation error (as stored) on one line.
fn error_line(e: &Value) -> String {
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("invalid");
    let place = e
        .get("path")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            e.get("edges")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let kind = e.get("kind").and_then(Value::as_str).unwrap_or("");
    match place {
        Some(p) if !message.contains(&p) => format!("[{kind}] {p}: {message}"),
        _ => format!("[{kind}] {message}"),
    }
}

impl Run for RejectsArgs {
    fn run(self, g: &Global) -> ExitCode {
        let store = match open_reader(g) {
            Ok(s) => s,
            Err(e) => return setup_failed(g, &e),
        };
        let run = self.run.map(RunId);
        if let Some(id) = run {
            match store.run(id) {
                Ok(Some(_)) => {}
                Ok(None) => return fail(g, &StoreError::UnknownRun(id), EXIT_USAGE),
                Err(e) => return fail(g, &e, EXIT_USAGE),
            }
        }
        let rejects = match store.rejects(run, Some(self.limit)) {
            Ok(r) => r,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        if g.format == Format::Json {
            print_json(&rejects);
            return ExitCode::from(EXIT_OK);
        }
        if rejects.is_empty() {
            if !g.quiet {
                out!(
                    "no rejects{}",
                    run.map(|r| format!(" in run {r}")).unwrap_or_default()
                );
            }
            return ExitCode::from(EXIT_OK);
        }
        for r in &rejects {
            let key = r
                .key
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_else(|| "(no key)".into());
            out!(
                "{} {} {key} · run {} · {} · {}",
                paint(&format!("reject {}", r.id), RED, g.color_out),
                r.model,
                r.run,
                r.fetcher,
                r.at
            );
            match r.errors.as_array() {
                Some(errors) if !errors.is_empty() => {
                    for e in errors {
                        out!("  - {}", error_line(e));
                    }
                }
                _ => out!("  - {}", r.reason),
            }
            let payload = r.payload.to_string();
            if g.verbose > 0 || payload.chars().count() <= PAYLOAD_SHOWN {
                out!("  payload: {payload}");
            } else {
                let cut: String = payload.chars().take(PAYLOAD_SHOWN).collect();
                out!(
                    "  payload: {cut}… ({} characters; -v or --format json shows it whole)",
                    payload.chars().count()
                );
            }
            out!();
        }
        ExitCode::from(EXIT_OK)
    }
}
