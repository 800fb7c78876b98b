//! `kye fetch REQUEST [--follow[=DEPTH]] [--concurrency N] [--max-age DUR] [--refresh]`: a
//! backfill with progress and a summary. With `--queue [--no-wait]` the run goes through the
//! PostgreSQL store's queue instead (`worker.rs`).
//!
//! Exit codes: `0` every requested key ended stored, missing or skipped (fresh); `65` some
//! were rejected (quarantined) or failed, or the run ended early because a host could not be
//! reached; `2` the request, configuration or store is wrong or the run could not proceed;
//! `130` the run was interrupted (Ctrl-C or SIGTERM; run it again to resume).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::common::{fail, fail_msg, print_json, setup_failed, tokio_runtime};
use super::progress::Reporter;
use super::{Format, Global, Run, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::runtime::{FetchRequest, FetchSummary, TransformSummary};
use crate::store::RunStatus;

/// Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `kye fetch`.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// What to fetch: `Pokemon.id in 1..=151`, `Pokemon.id in [1, 4, 7]`,
    /// `Pokemon.name = "pikachu"`.
    #[arg(value_name = "REQUEST")]
    pub request: String,
    /// Follow references to other models, DEPTH levels deep (`--follow` alone: 1).
    #[arg(
        long,
        value_name = "DEPTH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "1"
    )]
    pub follow: Option<u32>,
    /// Keys in flight at once [default: run.concurrency in kye.toml, else 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Skip keys stored less than this long ago (`30m`, `6h`, `1d`).
    #[arg(long, value_name = "DUR")]
    pub max_age: Option<String>,
    /// Fetch every key, even fresh ones and ones an interrupted run already did.
    #[arg(long)]
    pub refresh: bool,
    /// Do not run the transformers reading what this fetch stored.
    #[arg(long)]
    pub no_transform: bool,
    /// Record the run and its keys in the PostgreSQL store's queue, for `worker`s on any
    /// machine to do; this process works on it too and waits for it (see --no-wait).
    #[arg(long)]
    pub queue: bool,
    /// With --queue: print the run id and return, leaving the run to the workers.
    #[arg(long, requires = "queue")]
    pub no_wait: bool,
    /// With --queue: claims of one batch (workers that died or lost their lease count)
    /// before its keys are failed [default: 3].
    #[arg(long, value_name = "N", requires = "queue", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_attempts: Option<u32>,
}

impl FetchArgs {
    /// A fetch of `request` with default options.
    pub fn new(request: impl Into<String>) -> Self {
        FetchArgs {
            request: request.into(),
            follow: None,
            concurrency: None,
            max_age: None,
            refresh: false,
            no_transform: false,
            queue: false,
            no_wait: false,
            batch_attempts: None,
        }
    }

    /// Runs the fetch and returns its summary (`Err` holds the exit code, the error already
    /// printed). Progress and the text summary go to the terminal as for the subcommand.
    pub fn execute(&self, g: &Global) -> Result<FetchSummary, ExitCode> {
        self.execute_and_transform(g).map(|(summary, _)| summary)
    }

    /// [`FetchArgs::execute`], then (unless `--no-transform`, nothing was stored, the run was
    /// interrupted or the store keeps no lineage) the transformers reading the models the
    /// fetch may have stored: the requested model, and with `--follow` every model. A
    /// transformer that fails is reported as `Some(Err)`.
    pub fn execute_and_transform(
        &self,
        g: &Global,
    ) -> Result<(FetchSummary, Option<crate::Result<TransformSummary>>), ExitCode> {
        let registry = crate::registry::registry().map_err(|e| fail(g, &e, EXIT_USAGE))?;
        // Request mistakes are usage errors, found before anything is opened or fetched.
        let resolved = registry
            .resolve_str(&self.request)
            .map_err(|e| fail(g, &e, EXIT_USAGE))?;
        let mut request = FetchRequest::new(self.request.clone())
            .follow(self.follow.unwrap_or(0))
            .refresh(self.refresh)
            .resume(!self.refresh);
        if let Some(n) = self.concurrency {
            request = request.concurrency(n as usize);
        }
        if let Some(age) = &self.max_age {
            request = request
                .max_age_str(age)
                .map_err(|e| fail_msg(g, e.message(), EXIT_USAGE))?;
        }
        let reporter = Arc::new(Reporter::new(g, resolved.keys().len()));
        let on_progress = reporter.clone();
        let rt = super::common::runtime_builder(g)
            .and_then(|b| b.on_progress(move |p| on_progress.update(p)).build())
            .map_err(|e| setup_failed(g, &e))?;
        // The configuration check of `sources check`, before anything runs: a missing secret
        // or required key of a source this fetch uses refuses to start (exit 2, naming it).
        let needed = crate::source::sources_for(
            registry,
            resolved.model().name(),
            self.follow.unwrap_or(0) > 0,
        );
        let report = crate::source::SourcesReport::configuration(rt.context(), &needed);
        if report.exit_code() != 0 {
            for c in report.problems() {
                eprintln!(
                    "{}: source `{}`: {}",
                    super::report::paint("error", super::report::RED, g.color_err),
                    c.source,
                    c.outcome.describe()
                );
            }
            eprintln!("nothing was fetched: `sources` lists what each source needs");
            return Err(ExitCode::from(EXIT_USAGE));
        }
        let tokio = tokio_runtime().map_err(|e| fail(g, &e, EXIT_USAGE))?;
        if !g.quiet && g.format != Format::Json && g.verbose > 0 {
            eprintln!(
                "fetching {} ({} keys) into {}",
                self.request,
                resolved.keys().len(),
                rt.with_store(|s| super::common::describe_store(s.kind(), s.location()))
            );
        }
        let result = tokio.block_on(rt.fetch(request));
        reporter.finish();
        let summary = result.map_err(|e| fail(g, &e, EXIT_USAGE))?;
        // Not after Ctrl-C, and not on a store that keeps no lineage (`dir:`): `kye
        // transform` says why there.
        let lineage = || rt.with_store(|s| s.lineage("").is_ok());
        if self.no_transform
            || summary.counts.stored == 0
            || summary.status == RunStatus::Interrupted
            || registry.transformers().is_empty()
            || !lineage()
        {
            return Ok((summary, None));
        }
        let models: Vec<&str> = if self.follow.unwrap_or(0) > 0 {
            registry.models().map(|m| m.name()).collect()
        } else {
            vec![resolved.model().name()]
        };
        let transformed = tokio.block_on(rt.transform_after(&models));
        Ok((summary, Some(transformed)))
    }
}

/// The exit code a fetch summary calls for, as `kye fetch` ends: 65 with rejected or failed
/// keys or when a host could not be reached, 130 when interrupted, else 0. Re-exported as
/// `cli::fetch_exit_code` for binaries that run a fetch of their own.
pub fn exit_code(summary: &FetchSummary) -> u8 {
    if summary.counts.rejected > 0 || summary.counts.failed > 0 || summary.unreachable.is_some() {
        EXIT_DATA
    } else if summary.status == RunStatus::Interrupted || summary.interrupted > 0 {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    }
}

/// Prints a fetch summary as `kye fetch` does: one line of counts, the problem keys and what to
/// look at next; with `--format json` the [`FetchSummary`] as JSON. Re-exported as
/// `cli::print_fetch_summary` for binaries that run a fetch of their own.
pub fn print_summary(summary: &FetchSummary, g: &Global) {
    if g.format == Format::Json {
        print_json(summary);
        return;
    }
    if g.quiet && summary.is_clean() {
        return;
    }
    out!("{summary}");
    for (title, list, total) in [
        ("rejected", &summary.rejects, summary.counts.rejected),
        ("failed", &summary.failures, summary.counts.failed),
    ] {
        if list.is_empty() {
            continue;
        }
        out!("{title}:");
        for p in list {
            out!("  {} {}: {}", p.model, p.key, p.reason);
        }
        if total > list.len() as u64 {
            out!("  ... and {} more", total - list.len() as u64);
        }
    }
    if summary.counts.rejected > 0 {
        out!(
            "the rejected payloads are kept with their errors: `rejects --run {}` shows them",
            summary.run
        );
    }
    let config = (!summary.failures.is_empty())
        .then(|| super::common::load_config(g).ok())
        .flatten();
    if let Some(hint) = summary
        .failures
        .iter()
        .find_map(|f| super::common::failure_hint_with(config.as_ref(), &f.model, &f.reason))
    {
        out!("hint: {hint}");
    }
    if summary.counts.failed > 0 {
        out!(
            "failed keys are fetched again by the next run of the same request (`runs` lists the history)"
        );
    }
    if let Some(why) = &summary.unreachable {
        out!("stopped early: {why}");
    } else if summary.status == RunStatus::Interrupted {
        out!("interrupted: run the same command again to resume where it stopped");
    }
}

impl Run for FetchArgs {
    fn run(self, g: &Global) -> ExitCode {
        if self.queue {
            return super::worker::fetch_queued(&self, g, self.no_wait);
        }
        match self.execute_and_transform(g) {
            Ok((summary, transformed)) => {
                print_summary(&summary, g);
                let code = exit_code(&summary);
                match transformed {
                    None => ExitCode::from(code),
                    Some(Ok(t)) => {
                        // One JSON document on stdout: the fetch's (`kye runs` has the rest).
                        if g.format != Format::Json {
                            super::transform::print_summary(&t, g);
                        }
                        ExitCode::from(code.max(super::transform::exit_code(&t)))
                    }
                    Some(Err(e)) => fail(
                        g,
                        &e.context("the transformers after the fetch failed"),
                        EXIT_DATA,
                    ),
                }
            }
            Err(code) => code,
        }
    }
}
