//! `kye check FILE.kye...`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{load_schema, Format, Global, Run, EXIT_OK};

/// Arguments of `kye check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Schema files; together they make one schema (models may reference each other).
    #[arg(required = true, value_name = "FILE.kye")]
    pub files: Vec<PathBuf>,
}

impl Run for CheckArgs {
    fn run(self, g: &Global) -> ExitCode {
        let schema = match load_schema(&self.files, g) {
            Ok(s) => s,
            Err(code) => {
                if g.format == Format::Json {
                    println!("{}", serde_json::json!({"valid": false}));
                }
                return code;
            }
        };
        if !schema.warnings().is_empty() && !g.quiet {
            eprint!(
                "{}",
                kye_lang::diagnostic::render_all(schema.warnings(), &schema.sources, g.color_err)
            );
        }
        let names: Vec<&str> = schema.models().iter().map(|m| m.name.as_str()).collect();
        match g.format {
            Format::Json => println!(
                "{}",
                serde_json::json!({
                    "valid": true,
                    "models": names,
                    "warnings": schema.warnings().len(),
                })
            ),
            Format::Text | Format::Markdown if !g.quiet => {
                println!(
                    "ok: {} model{} ({})",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                );
                if g.verbose > 0 {
                    for m in schema.models() {
                        let ix: Vec<String> = m.indexes.iter().map(|i| i.to_string()).collect();
                        println!(
                            "  {}{}: {} edges, {} assertions",
                            m.name,
                            ix.join(""),
                            m.edges.len(),
                            m.assertions.len()
                        );
                    }
                }
            }
            Format::Text | Format::Markdown => {}
        }
        ExitCode::from(EXIT_OK)
    }
}
