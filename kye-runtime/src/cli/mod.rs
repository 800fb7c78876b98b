//! The `kye` command line.
//!
//! ```text
//! kye [--format text|json] [-v|-q] <command>
//!   check FILE.kye...                          exit 0 valid, 2 with diagnostics on stderr
//!   validate --schema F.kye [--schema ...] --model NAME --data FILE
//!                                              exit 0 valid, 65 data errors, 2 usage/schema error
//! ```
//!
//! Exit codes are a contract: `0` success, `65` the data has errors (EX_DATAERR), `2` a usage,
//! schema or input-file problem. Nothing exits with `1`.
//!
//! # Adding a subcommand
//!
//! Write `cli/<name>.rs` with a clap `Args` struct implementing [`Run`], then add one variant
//! to [`Command`] (and its arm in [`Command::run`]).

mod check;
mod list;
mod report;
mod validate;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use check::CheckArgs;
pub use list::ListArgs;
pub use validate::ValidateArgs;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: usage, schema or input-file error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the data has errors (`EX_DATAERR` of sysexits.h).
pub const EXIT_DATA: u8 = 65;

/// Output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// For people: grouped, colored when the output is a terminal.
    #[default]
    Text,
    /// One JSON document on stdout, for programs.
    Json,
}

/// kye: check schemas and validate data against them.
#[derive(Debug, Parser)]
#[command(name = "kye", version, about, propagate_version = true)]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Say more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Say nothing on success; only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check .kye schema files; print diagnostics for every problem.
    Check(CheckArgs),
    /// Validate a data file (.json, .jsonl, .csv, .yaml) against a model.
    Validate(ValidateArgs),
    /// List the models and fetchers linked into this binary.
    List(ListArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self, g: &Global) -> ExitCode {
        match self {
            Command::Check(a) => a.run(g),
            Command::Validate(a) => a.run(g),
            Command::List(a) => a.run(g),
        }
    }
}

/// Options every subcommand sees.
#[derive(Debug, Clone)]
pub struct Global {
    /// Output format.
    pub format: Format,
    /// Verbosity: 0 normal, 1+ more.
    pub verbose: u8,
    /// Only errors.
    pub quiet: bool,
    /// Color on stdout.
    pub color_out: bool,
    /// Color on stderr.
    pub color_err: bool,
}

/// A subcommand.
pub trait Run {
    /// Runs it and returns the process exit code.
    fn run(self, g: &Global) -> ExitCode;
}

/// Parses `std::env::args` and runs the command.
pub fn run() -> ExitCode {
    run_from(std::env::args_os())
}

/// Parses the given arguments (the first is the program name) and runs the command.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; every usage error exits 2.
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let g = Global {
        format: cli.format,
        verbose: cli.verbose,
        quiet: cli.quiet,
        color_out: !no_color && std::io::stdout().is_terminal(),
        color_err: !no_color && std::io::stderr().is_terminal(),
    };
    cli.command.run(&g)
}

/// Reads and compiles schema files; on failure prints diagnostics (or the I/O error) to stderr.
pub(crate) fn load_schema(
    paths: &[std::path::PathBuf],
    g: &Global,
) -> Result<kye_lang::Schema, ExitCode> {
    let mut sources = kye_lang::SourceMap::new();
    for p in paths {
        match std::fs::read_to_string(p) {
            Ok(text) => {
                sources.add(p.display().to_string(), text);
            }
            Err(e) => {
                eprintln!(
                    "{}: cannot read {}: {e}",
                    report::paint("error", report::RED, g.color_err),
                    p.display()
                );
                return Err(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    match kye_lang::compile(sources) {
        Ok(schema) => Ok(schema),
        Err(e) => {
            eprint!("{}", e.render(g.color_err));
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}
