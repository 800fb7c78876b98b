//! `kye drift`: fields the sources send that the schema does not know, by model and path,
//! with first and last sighting and an example value.

use std::process::ExitCode;

use clap::Args;

use super::common::{fail, open_reader, print_json, setup_failed, Table};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};

/// Arguments of `kye drift`.
#[derive(Debug, Clone, Args)]
pub struct DriftArgs {}

impl Run for DriftArgs {
    fn run(self, g: &Global) -> ExitCode {
        let store = match open_reader(g) {
            Ok(s) => s,
            Err(e) => return setup_failed(g, &e),
        };
        let drift = match store.drift() {
            Ok(d) => d,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        if g.format == Format::Json {
            print_json(&drift);
            return ExitCode::from(EXIT_OK);
        }
        if drift.is_empty() {
            if !g.quiet {
                out!("no drift: every field the sources sent is in the schema");
            }
            return ExitCode::from(EXIT_OK);
        }
        let mut table = Table::new([
            "model",
            "field",
            "seen",
            "first seen",
            "last seen",
            "last run",
            "example",
        ]);
        for d in &drift {
            table.row(vec![
                d.model.clone(),
                d.path.clone(),
                d.count.to_string(),
                d.first_seen.to_string(),
                d.last_seen.to_string(),
                d.last_run.to_string(),
                d.example.to_string(),
            ]);
        }
        out_raw!("{}", table.render(g.format));
        ExitCode::from(EXIT_OK)
    }
}
