//! `kye fetch REQUEST --queue [--no-wait]` and `kye worker [--exit-when-idle] [--concurrency N]
//! [--name NAME]`: a run recorded in the PostgreSQL store's queue, and the workers that do it
//! (any number, on any number of machines). See `docs/many-machines.md`.

use std::process::ExitCode;

use clap::Args;

use super::common::fail_msg;
#[cfg(feature = "postgres")]
use super::common::setup_failed;
use super::{Global, Run, EXIT_USAGE};

/// Arguments of `kye worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Stop when no queued run has work left (default: wait for more).
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Keys of a batch in flight at once [default: run.concurrency in kye.toml, else 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// This worker's name in the queue and in `runs` [default: HOST:PID].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Seconds a claim holds a batch; renewed every third of it while working.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease: u64,
    /// Seconds the batch in hand may take to finish after SIGTERM or Ctrl-C before it is
    /// released for another worker.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub grace: u64,
}

/// The PostgreSQL store of the global flags, or the exit code of the error.
#[cfg(feature = "postgres")]
fn pg_spec(g: &Global, what: &str) -> Result<crate::store::PgSpec, ExitCode> {
    match super::common::store_spec(g) {
        Ok(crate::store::StoreSpec::Postgres(spec)) => Ok(spec),
        Ok(other) => Err(fail_msg(
            g,
            &format!(
                "{what} needs a PostgreSQL store (--db postgres://USER@HOST:PORT/DB), not {other}: \
                 the queue and its workers meet in the database"
            ),
            EXIT_USAGE,
        )),
        Err(e) => Err(setup_failed(g, &e)),
    }
}

#[cfg(not(feature = "postgres"))]
impl Run for WorkerArgs {
    fn run(self, g: &Global) -> ExitCode {
        fail_msg(
            g,
            "`worker` needs kye built with the cargo feature `postgres`",
            EXIT_USAGE,
        )
    }
}

#[cfg(feature = "postgres")]
impl Run for WorkerArgs {
    fn run(self, g: &Global) -> ExitCode {
        use super::common::{fail, print_json, tokio_runtime};
        use super::{Format, EXIT_OK};
        use std::time::Duration;

        let spec = match pg_spec(g, "`worker`") {
            Ok(s) => s,
            Err(code) => return code,
        };
        let rt = match super::common::runtime_builder(g).and_then(|b| b.build()) {
            Ok(rt) => rt,
            Err(e) => return setup_failed(g, &e),
        };
        let queue = match crate::Queue::open(&spec) {
            Ok(q) => q,
            Err(e) => return setup_failed(g, &e),
        };
        let mut opts = crate::WorkerOptions {
            exit_when_idle: self.exit_when_idle,
            concurrency: self.concurrency.map(|n| n as usize),
            lease: Duration::from_secs(self.lease),
            grace: Duration::from_secs(self.grace),
            signals: true,
            ..crate::WorkerOptions::default()
        };
        if let Some(name) = self.name {
            opts.name = name;
        }
        let tokio = match tokio_runtime() {
            Ok(t) => t,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        if !g.quiet && g.format != Format::Json {
            eprintln!("worker {} on {spec}", opts.name);
        }
        match tokio.block_on(rt.work(&queue, &opts)) {
            Ok(report) => {
                if g.format == Format::Json {
                    print_json(&report);
                } else if !g.quiet {
                    out!(
                        "worker {}: {} batches ({} keys) committed, {} lost to expired leases, \
                         {} put back, {} given up",
                        opts.name,
                        report.batches,
                        report.keys,
                        report.lost,
                        report.released,
                        report.gave_up
                    );
                }
                ExitCode::from(EXIT_OK)
            }
            Err(e) => fail(g, &e, EXIT_USAGE),
        }
    }
}

/// `fetch --queue`: records the run in the queue; then, unless `no_wait`, works on it like a
/// worker and waits for it with the progress bar.
#[cfg(not(feature = "postgres"))]
pub(crate) fn fetch_queued(_args: &super::FetchArgs, g: &Global, _no_wait: bool) -> ExitCode {
    fail_msg(
        g,
        "`fetch --queue` needs kye built with the cargo feature `postgres`",
        EXIT_USAGE,
    )
}

/// `fetch --queue`: records the run in the queue; then, unless `no_wait`, works on it like a
/// worker and waits for it with the progress bar.
#[cfg(feature = "postgres")]
pub(crate) fn fetch_queued(args: &super::FetchArgs, g: &Global, no_wait: bool) -> ExitCode {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::common::{fail, print_json, tokio_runtime};
    use super::progress::Reporter;
    use super::{Format, EXIT_DATA, EXIT_OK};
    use crate::runtime::{FetchRequest, Progress};

    let spec = match pg_spec(g, "`fetch --queue`") {
        Ok(s) => s,
        Err(code) => return code,
    };
    if args.max_age.is_some() || args.refresh {
        return fail_msg(
            g,
            "`fetch --queue` fetches every key it records; --max-age and --refresh do not apply",
            EXIT_USAGE,
        );
    }
    let registry = match crate::registry::registry() {
        Ok(r) => r,
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    let resolved = match registry.resolve_str(&args.request) {
        Ok(r) => r,
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    let total = resolved.keys().len();
    let rt = match super::common::runtime_builder(g).and_then(|b| b.build()) {
        Ok(rt) => rt,
        Err(e) => return setup_failed(g, &e),
    };
    let queue = match crate::Queue::open(&spec) {
        Ok(q) => match args.batch_attempts {
            Some(n) => q.batch_attempts(n),
            None => q,
        },
        Err(e) => return setup_failed(g, &e),
    };
    let request = FetchRequest::new(args.request.clone()).follow(args.follow.unwrap_or(0));
    let tokio = match tokio_runtime() {
        Ok(t) => t,
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    let run = match tokio.block_on(queue.enqueue(&rt, &request)) {
        Ok(r) => r,
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    // A list function's keys are all recorded by now.
    let total = match queue.progress(run) {
        Ok(Some(p)) => p.keys,
        _ => total,
    };
    if no_wait {
        if g.format == Format::Json {
            print_json(&serde_json::json!({ "run": run, "keys": total, "queued": true }));
        } else {
            out!(
                "run {run} queued: {total} keys; start workers with `worker --db {spec}` (`runs` shows its progress)"
            );
        }
        return ExitCode::from(EXIT_OK);
    }
    let opts = crate::WorkerOptions {
        concurrency: args.concurrency.map(|n| n as usize),
        signals: true,
        ..crate::WorkerOptions::default()
    };
    let stop = opts.stop.clone();
    let reporter = Arc::new(Reporter::new(g, total));
    let started = Instant::now();
    // A second connection watches the run (and shows its progress) while this process works.
    let watch = {
        let reporter = reporter.clone();
        let stop = stop.clone();
        let spec = spec.clone();
        std::thread::spawn(move || -> crate::Result<Option<crate::QueueProgress>> {
            let queue = crate::Queue::open(&spec)?;
            loop {
                let p = queue.progress(run)?;
                if let Some(p) = &p {
                    reporter.update(&Progress {
                        run,
                        counts: p.counts,
                        interrupted: 0,
                        total: p.keys,
                        elapsed: started.elapsed(),
                    });
                }
                if p.as_ref().is_none_or(|p| p.is_done()) || stop.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                    return Ok(p);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let worked = tokio.block_on(rt.work(&queue, &opts));
    stop.store(true, Ordering::Relaxed);
    let progress = watch
        .join()
        .unwrap_or_else(|_| Err(crate::Error::permanent("the progress thread panicked")));
    reporter.finish();
    if let Err(e) = worked {
        return fail(g, &e, EXIT_USAGE);
    }
    let progress = match progress {
        Ok(Some(p)) => p,
        Ok(None) => return fail_msg(g, &format!("run {run} is not a queued run"), EXIT_USAGE),
        Err(e) => return fail(g, &e, EXIT_USAGE),
    };
    if g.format == Format::Json {
        print_json(&progress);
    } else {
        let c = &progress.counts;
        let state = if progress.is_done() {
            "completed"
        } else {
            "left to the workers (stopped waiting)"
        };
        out!(
            "run {run} {state}: {} stored, {} rejected, {} missing, {} failed, {} skipped ({} batches, {} keys) in {}",
            c.stored,
            c.rejected,
            c.missing,
            c.failed,
            c.skipped,
            progress.done + progress.failed,
            progress.keys,
            crate::duration::human(started.elapsed())
        );
        if c.failed > 0 || c.rejected > 0 {
            out!("`rejects --run {run}` shows the rejected payloads; failed keys have their reasons in _kye_keys");
        }
    }
    let c = &progress.counts;
    if c.failed > 0 || c.rejected > 0 {
        ExitCode::from(EXIT_DATA)
    } else if progress.is_done() {
        ExitCode::from(EXIT_OK)
    } else {
        ExitCode::from(super::EXIT_INTERRUPTED)
    }
}
