//! `kye validate --schema F.kye [--schema ...] --model NAME --data FILE`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::report::{paint, render, RED};
use super::{load_schema, Format, Global, Run, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::data::{validate_file, DataError};

/// Arguments of `kye validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Schema file(s); repeat for a schema split over several files.
    #[arg(long = "schema", short = 's', required = true, value_name = "FILE.kye")]
    pub schemas: Vec<PathBuf>,
    /// The model the rows belong to.
    #[arg(long, short = 'm', value_name = "NAME")]
    pub model: String,
    /// The data file: .json (array, or `{Model: [rows]}`), .jsonl, .csv (header row), .yaml/.yml.
    #[arg(long, short = 'd', value_name = "FILE")]
    pub data: PathBuf,
}

impl Run for ValidateArgs {
    fn run(self, g: &Global) -> ExitCode {
        let schema = match load_schema(&self.schemas, g) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let report = match validate_file(&schema, &self.model, &self.data) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e}", paint("error", RED, g.color_err));
                let code = match e {
                    DataError::Malformed { .. } => EXIT_DATA,
                    _ => EXIT_USAGE,
                };
                if g.format == Format::Json && code == EXIT_DATA {
                    let doc = serde_json::json!({
                        "valid": false,
                        "errors": [{"kind": "Unreadable", "model": self.model, "edges": [], "rows": [], "message": e.to_string()}],
                        "warnings": [],
                    });
                    println!("{doc}");
                }
                return ExitCode::from(code);
            }
        };
        match g.format {
            Format::Json => match serde_json::to_string(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: cannot write the report: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            },
            Format::Text | Format::Markdown => {
                if !(g.quiet && report.valid) {
                    print!(
                        "{}",
                        render(
                            &report,
                            &schema,
                            &self.data.display().to_string(),
                            &self.model,
                            g.verbose > 0,
                            g.color_out
                        )
                    );
                }
            }
        }
        ExitCode::from(if report.valid { EXIT_OK } else { EXIT_DATA })
    }
}
