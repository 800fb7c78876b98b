//! `kye get REQUEST`: fetch, validate and store one key, always from the source; print the
//! stored record, or the validation errors of a payload that was quarantined.
//!
//! Exit codes: `0` stored or missing (the source has no such key), `65` rejected or failed,
//! `2` a request, configuration or store problem.

use std::process::ExitCode;

use clap::Args;
use kye_lang::validate::ValidationError;
use serde_json::json;

use super::common::{fail, fail_msg, print_json, setup_failed, tokio_runtime};
use super::report::{paint, RED, YELLOW};
use super::{Format, Global, Run, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::runtime::GetResult;

/// Arguments of `kye get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// One key: `Pokemon.id = 25`, `Pokemon.name = "pikachu"`.
    #[arg(value_name = "REQUEST")]
    pub request: String,
}

/// `path: message` for one validation error.
pub(crate) fn error_line(e: &ValidationError) -> String {
    let place = e.path.clone().or_else(|| e.edges.first().cloned());
    match place {
        Some(p) if !e.message.contains(&p) => format!("{}.{p}: {}", e.model, e.message),
        _ => e.message.clone(),
    }
}

impl Run for GetArgs {
    fn run(self, g: &Global) -> ExitCode {
        let registry = match crate::registry::registry() {
            Ok(r) => r,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        match registry.resolve_str(&self.request) {
            Ok(r) if r.keys().len() == 1 => {}
            Ok(r) if r.keys().lister().is_some() => {
                let l = r.keys().lister().map(|l| (l.function, l.identifier_text()));
                let (function, identifier) = l.unwrap_or_default();
                return fail_msg(
                    g,
                    &format!(
                        "`get` takes one key; `{}` asks for every key `{function}` lists: use `fetch` for that, or name the key (`{identifier} = ...`)",
                        self.request
                    ),
                    EXIT_USAGE,
                );
            }
            Ok(r) => {
                return fail_msg(
                    g,
                    &format!(
                        "`get` takes exactly one key and `{}` has {}; use `fetch` for several",
                        self.request,
                        r.keys().len()
                    ),
                    EXIT_USAGE,
                )
            }
            Err(e) => return fail(g, &e, EXIT_USAGE),
        }
        let rt = match super::common::runtime_builder(g).and_then(|b| b.build()) {
            Ok(rt) => rt,
            Err(e) => return setup_failed(g, &e),
        };
        let tokio = match tokio_runtime() {
            Ok(t) => t,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        let request = self.request.as_str();
        match tokio.block_on(rt.get(request)) {
            Ok(GetResult::Stored {
                record,
                warnings,
                run,
            }) => {
                if g.format == Format::Json {
                    print_json(&json!({
                        "request": request, "status": "stored", "run": run,
                        "record": record, "warnings": warnings,
                    }));
                } else {
                    print_json(&record);
                    if !g.quiet {
                        for w in &warnings {
                            eprintln!(
                                "{}: {} (recorded as drift; `drift` lists it)",
                                paint("warning", YELLOW, g.color_err),
                                error_line(w)
                            );
                        }
                    }
                }
                ExitCode::from(EXIT_OK)
            }
            Ok(GetResult::Rejected {
                payload,
                errors,
                run,
            }) => {
                if g.format == Format::Json {
                    print_json(&json!({
                        "request": request, "status": "rejected", "run": run,
                        "errors": errors, "payload": payload,
                    }));
                } else {
                    eprintln!(
                        "{}: {request}: the source's record is invalid, so it was not stored; \
                         the payload is kept in rejects with these errors (`rejects --run {run}`):",
                        paint("rejected", RED, g.color_err)
                    );
                    for e in &errors {
                        eprintln!("  - {}", error_line(e));
                    }
                }
                ExitCode::from(EXIT_DATA)
            }
            Ok(GetResult::Missing { reason, run }) => {
                if g.format == Format::Json {
                    print_json(&json!({
                        "request": request, "status": "missing", "run": run, "reason": reason,
                    }));
                } else if !g.quiet {
                    eprintln!("{request}: missing: the source has no such key ({reason})");
                }
                ExitCode::from(EXIT_OK)
            }
            Err(e) => {
                if g.format == Format::Json {
                    print_json(&json!({
                        "request": request, "status": "failed", "reason": e.to_string(),
                    }));
                }
                let code = fail(g, &e, EXIT_DATA);
                let config = super::common::load_config(g).ok();
                let model = request.split(['.', '(']).next().unwrap_or("").trim();
                if let Some(hint) =
                    super::common::failure_hint_with(config.as_ref(), model, &e.to_string())
                {
                    eprintln!("hint: {hint}");
                }
                code
            }
        }
    }
}
