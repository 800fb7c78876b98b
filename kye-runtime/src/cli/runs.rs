//! `kye runs [--limit N]`: run history, newest first, with counts and durations.

use std::process::ExitCode;

use clap::Args;

use super::common::{fail, open_reader, print_json, setup_failed, Table};
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};
use crate::duration::human;

/// Arguments of `kye runs`.
#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// At most N runs, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

impl Run for RunsArgs {
    fn run(self, g: &Global) -> ExitCode {
        let store = match open_reader(g) {
            Ok(s) => s,
            Err(e) => return setup_failed(g, &e),
        };
        let runs = match store.runs(Some(self.limit)) {
            Ok(r) => r,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        if g.format == Format::Json {
            print_json(&runs);
            return ExitCode::from(EXIT_OK);
        }
        let mut table = Table::new([
            "run", "status", "started", "took", "stored", "rejected", "missing", "failed",
            "skipped", "request",
        ]);
        for r in &runs {
            let took = r
                .ended_at
                .map(|end| human(r.started_at.age(end)))
                .unwrap_or_else(|| "-".into());
            let mut status = r.status.to_string();
            if let Some(from) = r.resumed_from {
                status.push_str(&format!(" (resumes {from})"));
            }
            let c = &r.counts;
            table.row(vec![
                r.id.to_string(),
                status,
                r.started_at.to_string(),
                took,
                c.stored.to_string(),
                c.rejected.to_string(),
                c.missing.to_string(),
                c.failed.to_string(),
                c.skipped.to_string(),
                r.request.clone(),
            ]);
        }
        out_raw!("{}", table.render(g.format));
        if g.verbose > 0 {
            for r in runs.iter().filter(|r| r.error.is_some()) {
                out!("run {}: {}", r.id, r.error.as_deref().unwrap_or_default());
            }
        }
        ExitCode::from(EXIT_OK)
    }
}
