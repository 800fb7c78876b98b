//! `kye list`: the registry listing (models, identifiers, fetchers with source location and doc
//! summary) as a table, JSON (`--format json`, fields documented in [`crate::listing`]) or
//! Markdown (`--format markdown` or `--markdown`, e.g. for a committed `REGISTRY.md`).

use std::process::ExitCode;

use clap::Args;

use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::listing::Listing;

/// Arguments of `kye list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print Markdown tables (e.g. for a committed REGISTRY.md) instead of text or JSON.
    #[arg(long)]
    pub markdown: bool,
}

impl Run for ListArgs {
    fn run(self, g: &Global) -> ExitCode {
        let registry = match crate::registry::registry() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let format = if self.markdown {
            Format::Markdown
        } else {
            g.format
        };
        print!("{}", Listing::new(registry).render(format));
        ExitCode::from(EXIT_OK)
    }
}
