//! `kye runs [--limit N]`: run history, newest first, with counts and durations; a queued run
//! (PostgreSQL) with its batches and workers.

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
        let queued = queued_progress(g, &runs);
        let mut table = Table::new([
            "run", "status", "started", "took", "stored", "rejected", "missing", "failed",
            "skipped", "source", "request",
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
            if let Some(p) = queued.iter().find(|p| p.0 == r.id) {
                status.push_str(&format!(" ({})", p.1));
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
                r.source.clone().unwrap_or_else(|| "-".into()),
                r.request.clone(),
            ]);
        }
        out_raw!("{}", table.render(g.format));
        if g.verbose > 0 {
            for (run, _, workers) in &queued {
                for w in workers {
                    out!("run {run}: worker {w}");
                }
            }
            for r in runs.iter().filter(|r| r.error.is_some()) {
                out!("run {}: {}", r.id, r.error.as_deref().unwrap_or_default());
            }
        }
        ExitCode::from(EXIT_OK)
    }
}

/// For each running queued run (PostgreSQL store): its batches as `queued 3/10 batches,
/// 2 workers`, and a line per worker (batches held, lease expiry). Empty for other stores.
#[cfg(feature = "postgres")]
fn queued_progress(
    g: &Global,
    runs: &[crate::store::RunInfo],
) -> Vec<(crate::store::RunId, String, Vec<String>)> {
    let Ok(crate::store::StoreSpec::Postgres(spec)) = super::common::store_spec(g) else {
        return Vec::new();
    };
    let running: Vec<_> = runs
        .iter()
        .filter(|r| r.status == crate::store::RunStatus::Running)
        .collect();
    if running.is_empty() {
        return Vec::new();
    }
    let Ok(queue) = crate::Queue::open(&spec) else {
        return Vec::new();
    };
    running
        .into_iter()
        .filter_map(|r| {
            let p = queue.progress(r.id).ok().flatten()?;
            let total = p.queued + p.claimed + p.done + p.failed;
            let mut text = format!(
                "queued {}/{total} batches, {} workers",
                p.done + p.failed,
                p.workers.iter().filter(|w| w.batches > 0).count()
            );
            if p.state == "enqueuing" {
                text.push_str(", enqueuing");
            }
            let workers = p
                .workers
                .iter()
                .map(|w| {
                    let mut line = format!(
                        "{}: {} batches ({} keys) committed",
                        w.worker, w.done, w.keys
                    );
                    if let Some(rate) = w.keys_per_second {
                        line.push_str(&format!(", {rate:.1} keys/s"));
                    }
                    if w.batches > 0 {
                        line.push_str(&format!(
                            ", holds {} batches, lease until {}",
                            w.batches, w.expires
                        ));
                    }
                    line
                })
                .collect();
            Some((r.id, text, workers))
        })
        .collect()
}

#[cfg(not(feature = "postgres"))]
fn queued_progress(
    _g: &Global,
    _runs: &[crate::store::RunInfo],
) -> Vec<(crate::store::RunId, String, Vec<String>)> {
    Vec::new()
}
