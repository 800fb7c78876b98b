//! Progress of `fetch`: an indicatif bar when stderr is a terminal, plain log lines every few
//! seconds when it is not (CI logs, pipes), nothing with `-q` or `--format json`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Format, Global};
use crate::runtime::Progress;
use crate::store::RunCounts;

/// How often a log line is printed when stderr is not a terminal.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(5);

/// Reports a running fetch.
pub(crate) enum Reporter {
    /// A live bar on a terminal.
    Bar(ProgressBar),
    /// Periodic lines on a pipe or file.
    Log(Mutex<Instant>),
    /// Nothing.
    Silent,
}

fn counts_text(c: &RunCounts) -> String {
    let mut s = format!(
        "{} stored, {} rejected, {} missing, {} failed",
        c.stored, c.rejected, c.missing, c.failed
    );
    if c.skipped > 0 {
        s.push_str(&format!(", {} skipped", c.skipped));
    }
    s
}

impl Reporter {
    /// The reporter suited to `g` and the terminal, for `total` requested keys.
    pub(crate) fn new(g: &Global, total: u64) -> Reporter {
        if g.quiet || g.format == Format::Json {
            return Reporter::Silent;
        }
        // Log lines (`-v`) and a redrawn bar would garble each other: with logs, plain lines.
        let logging = g.verbose > 0 || std::env::var_os("KYE_LOG").is_some();
        if std::io::stderr().is_terminal() && !logging {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner:.green} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} keys · {rate} · ETA {eta} · {msg}",
            )
            .map(|s| {
                s.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1} keys/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(counts_text(&RunCounts::default()));
            bar.enable_steady_tick(Duration::from_millis(120));
            Reporter::Bar(bar)
        } else {
            Reporter::Log(Mutex::new(Instant::now()))
        }
    }

    /// Called by the runtime after each write.
    pub(crate) fn update(&self, p: &Progress) {
        let done = p.counts.total();
        match self {
            Reporter::Bar(bar) => {
                bar.set_length(p.total.max(done));
                bar.set_position(done);
                bar.set_message(counts_text(&p.counts));
            }
            Reporter::Log(last) => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() < LOG_EVERY {
                    return;
                }
                *last = Instant::now();
                let secs = p.elapsed.as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let left = p.total.saturating_sub(done);
                let eta = if rate > 0.0 {
                    format!("{:.0}s", left as f64 / rate)
                } else {
                    "?".to_string()
                };
                eprintln!(
                    "run {}: {done}/{} keys ({}) {rate:.1} keys/s, ETA {eta}",
                    p.run,
                    p.total,
                    counts_text(&p.counts)
                );
            }
            Reporter::Silent => {}
        }
    }

    /// Removes the bar before the summary is printed.
    pub(crate) fn finish(&self) {
        if let Reporter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
