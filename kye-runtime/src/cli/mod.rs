//! The `kye` command line.
//!
//! ```text
//! kye [--format text|json|markdown] [-v|-q] [--db STORE] [--config FILE] <command>
//!   check FILE.kye...                          exit 0 valid, 2 with diagnostics on stderr
//!   validate --schema F.kye [--schema ...] --model NAME --data FILE
//!                                              exit 0 valid, 65 data errors, 2 usage/schema error
//!   list                                       the registry listing (models, fetchers)
//!   sources [check [NAME]]                     declared sources; check: exit 0 ok,
//!                                              2 configuration/credentials, 69 unreachable
//!   get REQUEST                                fetch, validate, store one key; print the record
//!   fetch REQUEST [--follow[=DEPTH]] [--concurrency N] [--max-age DUR] [--refresh]
//!                                              a backfill with progress; exit 0 all stored or
//!                                              missing, 65 some rejected or failed
//!   show MODEL [--where 'edge = value'] [--limit N]
//!                                              stored records (table, JSON with nested edges)
//!   fetch REQUEST --queue [--no-wait]          the run through the PostgreSQL store's queue
//!   worker [--exit-when-idle] [--concurrency N] [--name NAME]
//!                                              work on queued runs (any number, any machine)
//!   runs [--limit N] | rejects [--run ID] | drift
//!                                              run history, quarantined payloads, unknown fields
//!   serve [--listen ADDR] [--master-key-file F]  the HTTP API (feature `server`)
//!   token create NAME --role R [--expires 30d] | token list | token revoke NAME
//!   secret set NAME (stdin) | secret list | secret rotate
//!   audit [--limit N]                          the server's audit log
//! ```
//!
//! Exit codes are a contract: `0` success, `65` the data has errors (EX_DATAERR: a payload was
//! rejected, a key failed), `2` a usage, schema, request, configuration or store problem, `69`
//! (EX_UNAVAILABLE) a source that cannot be reached at all (for a binary that checks its source
//! before it starts). Nothing exits with `1`.
//!
//! The global flags work before or after the subcommand. `--format json` output of every
//! command is documented in `docs/cli.md` and stable: fields may be added, never renamed.
//! Errors are one paragraph on stderr (what, which key, what to do); `-v` adds the chain of
//! causes.
//!
//! # In your own binary
//!
//! ```no_run
//! // Every subcommand, with your crate's fetchers in the registry; `--version` and `--help`
//! // show your crate's name, version and description (with kye's version after).
//! fn main() -> std::process::ExitCode {
//!     kye_runtime::cli::App::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
//!         .about(env!("CARGO_PKG_DESCRIPTION"))
//!         .run()
//! }
//! ```
//!
//! Through the `kye` facade this is `kye::cli::run!()`. [`run`] itself is the standalone
//! `kye` binary: it calls itself kye.
//!
//! # Commands of your own
//!
//! A binary with flags or a default command of its own builds on the pieces kye's subcommands
//! are made of:
//!
//! * [`GlobalArgs`] flattened into its clap parser, [`GlobalArgs::to_global`] for the [`Global`]
//!   options every subcommand runs with, and [`init_logging`];
//! * [`Command::run`] for kye's subcommands, or one of them built in code ([`FetchArgs::new`],
//!   [`ShowArgs::new`]) and run with [`Run::run`];
//! * a fetch reported the way `kye fetch` reports it: [`FetchArgs::execute`] returns the
//!   [`FetchSummary`](crate::runtime::FetchSummary), [`print_fetch_summary`] prints it and
//!   [`fetch_exit_code`] is the exit code `kye fetch` would end with;
//! * [`load_config`], [`store_spec`] and [`Global::config_overrides`] for the configuration and
//!   the store the subcommands use, and the exit codes ([`EXIT_OK`], [`EXIT_DATA`], ...).
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use clap::Parser;
//! use kye_runtime::cli::{self, Command, FetchArgs, GlobalArgs};
//!
//! /// A source whose default command is its backfill.
//! #[derive(Parser)]
//! struct Cli {
//!     /// Fetch from this mirror (sets `source.base_url` for this run).
//!     #[arg(long)]
//!     mirror: Option<String>,
//!     #[command(flatten)]
//!     kye: GlobalArgs,
//!     #[command(subcommand)]
//!     command: Option<Command>,
//! }
//!
//! fn main() -> ExitCode {
//!     let cli = Cli::parse();
//!     let mut g = cli.kye.to_global();
//!     cli::init_logging(&g);
//!     if let Some(url) = cli.mirror {
//!         g.config_overrides.push(("source.base_url".into(), url));
//!     }
//!     match cli.command {
//!         Some(command) => command.run(&g),
//!         None => match FetchArgs::new("Pokemon.id in 1..=151").execute(&g) {
//!             Ok(summary) => {
//!                 cli::print_fetch_summary(&summary, &g);
//!                 ExitCode::from(cli::fetch_exit_code(&summary))
//!             }
//!             Err(code) => code,
//!         },
//!     }
//! }
//! ```
//!
//! # Adding a subcommand
//!
//! Write `cli/<name>.rs` with a clap `Args` struct implementing [`Run`], then add one variant
//! to [`Command`] (and its arm in [`Command::run`]).

mod check;
#[macro_use]
mod common;
#[cfg(feature = "server")]
mod audit;
mod drift;
mod fetch;
mod get;
mod list;
mod progress;
mod rejects;
mod report;
mod runs;
#[cfg(feature = "server")]
mod secret;
#[cfg(feature = "server")]
mod serve;
mod show;
mod sources;
#[cfg(feature = "server")]
mod token;
mod transform;
mod validate;
mod worker;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use crate::output::Format;
#[cfg(feature = "server")]
pub use audit::AuditArgs;
pub use check::CheckArgs;
pub use common::{load_config, open_reader, runtime_builder, store_spec};
pub use drift::DriftArgs;
pub use fetch::EXIT_INTERRUPTED;
pub use fetch::{exit_code as fetch_exit_code, print_summary as print_fetch_summary, FetchArgs};
pub use get::GetArgs;
pub use list::ListArgs;
pub use rejects::RejectsArgs;
pub use runs::RunsArgs;
#[cfg(feature = "server")]
pub use secret::{SecretArgs, SecretCommand, NEW_MASTER_KEY_ENV};
#[cfg(feature = "server")]
pub use serve::ServeArgs;
pub use show::ShowArgs;
pub use sources::{SourcesArgs, SourcesCommand};
#[cfg(feature = "server")]
pub use token::{TokenArgs, TokenCommand};
pub use transform::{
    exit_code as transform_exit_code, print_summary as print_transform_summary, TransformArgs,
};
pub use validate::ValidateArgs;
pub use worker::WorkerArgs;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: usage, schema or input-file error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the data has errors (`EX_DATAERR` of sysexits.h).
pub const EXIT_DATA: u8 = 65;
/// Exit code: a source cannot be reached at all (`EX_UNAVAILABLE` of sysexits.h).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// kye: check schemas and validate data against them.
#[derive(Debug, Parser)]
#[command(
    name = "kye",
    version,
    about = KYE_ABOUT,
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Flags every subcommand sees.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The global flags, as a clap `Args` struct to flatten into a binary's own parser. Each
/// works before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Say more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Say nothing on success; only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The store: a SQLite file (`kye.db`, `sqlite:PATH`) or `dir:PATH` [default: `store` in
    /// kye.toml, else ./kye.db].
    #[arg(long, global = true, value_name = "STORE", visible_alias = "store")]
    pub db: Option<std::path::PathBuf>,
    /// Configuration file [default: $KYE_CONFIG, else ./kye.toml when present].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

impl GlobalArgs {
    /// The options subcommands run with (colors decided from the terminals and `NO_COLOR`).
    pub fn to_global(&self) -> Global {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Global {
            format: self.format,
            verbose: self.verbose,
            quiet: self.quiet,
            color_out: !no_color && std::io::stdout().is_terminal(),
            color_err: !no_color && std::io::stderr().is_terminal(),
            db: self.db.clone(),
            config: self.config.clone(),
            config_overrides: Vec::new(),
        }
    }
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
    /// The declared sources (version, hosts, config keys, secrets set or not); `sources check
    /// [NAME]` verifies the environment (exit 0 ok, 2 configuration, 69 unreachable).
    Sources(SourcesArgs),
    /// Fetch, validate and store one key; print the record or the validation errors.
    Get(GetArgs),
    /// Fetch many keys (a backfill) with progress; follow references.
    Fetch(FetchArgs),
    /// Show stored records of a model.
    Show(ShowArgs),
    /// Run history with counts and durations.
    Runs(RunsArgs),
    /// Quarantined payloads with their validation errors.
    Rejects(RejectsArgs),
    /// Fields the sources send that the schema does not know.
    Drift(DriftArgs),
    /// Run the transformers over stored records (only outputs whose inputs changed).
    Transform(TransformArgs),
    /// Serve the store over HTTP: tokens, roles, read-through fetches (docs/serving.md).
    #[cfg(feature = "server")]
    Serve(ServeArgs),
    /// API tokens of `serve`: create (printed once), list, revoke.
    #[cfg(feature = "server")]
    Token(TokenArgs),
    /// Sealed secrets of `serve`: set (value from stdin), list (names only), rotate.
    #[cfg(feature = "server")]
    Secret(SecretArgs),
    /// The audit log of `serve`, newest first.
    #[cfg(feature = "server")]
    Audit(AuditArgs),
    /// Work on the runs queued in a PostgreSQL store (`fetch --queue`), with any number of
    /// other workers on any number of machines.
    Worker(WorkerArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self, g: &Global) -> ExitCode {
        match self {
            Command::Check(a) => a.run(g),
            Command::Validate(a) => a.run(g),
            Command::List(a) => a.run(g),
            Command::Sources(a) => a.run(g),
            Command::Get(a) => a.run(g),
            Command::Fetch(a) => a.run(g),
            Command::Show(a) => a.run(g),
            Command::Runs(a) => a.run(g),
            Command::Rejects(a) => a.run(g),
            Command::Drift(a) => a.run(g),
            Command::Transform(a) => a.run(g),
            #[cfg(feature = "server")]
            Command::Serve(a) => a.run(g),
            #[cfg(feature = "server")]
            Command::Token(a) => a.run(g),
            #[cfg(feature = "server")]
            Command::Secret(a) => a.run(g),
            #[cfg(feature = "server")]
            Command::Audit(a) => a.run(g),
            Command::Worker(a) => a.run(g),
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
    /// `--db`: the store.
    pub db: Option<std::path::PathBuf>,
    /// `--config`: the configuration file.
    pub config: Option<std::path::PathBuf>,
    /// Configuration values set by the binary itself (dotted key, value), applied over
    /// kye.toml and the `KYE_*` environment, e.g. a flag of the binary that points its
    /// source's base URL at a mirror.
    pub config_overrides: Vec<(String, String)>,
}

/// A subcommand.
pub trait Run {
    /// Runs it and returns the process exit code.
    fn run(self, g: &Global) -> ExitCode;
}

/// The standalone `kye` binary's one-line description.
const KYE_ABOUT: &str = "kye: check schemas, validate data files, and fetch, validate and store \
     records from the sources linked into this binary";

/// kye's own version, shown after a user binary's version (`catsource 0.3.0 (kye 0.1.0)`).
pub const KYE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Who a binary is on its command line: the name, version and description `--version` and
/// `--help` show. A binary of data sources passes its own crate's (`kye::cli::run!()` does),
/// so `catsource --version` prints `catsource 0.3.0 (kye 0.1.0)`, not kye's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    name: &'static str,
    version: &'static str,
    about: Option<&'static str>,
}

impl App {
    /// A binary called `name` at `version`, usually `env!("CARGO_PKG_NAME")` and
    /// `env!("CARGO_PKG_VERSION")` of the binary's crate.
    pub fn new(name: &'static str, version: &'static str) -> App {
        App {
            name,
            version,
            about: None,
        }
    }

    /// The one-line description `--help` starts with (e.g. `env!("CARGO_PKG_DESCRIPTION")`;
    /// empty means none: `--help` then says it is a kye data source).
    pub fn about(mut self, about: &'static str) -> App {
        self.about = Some(about).filter(|a| !a.trim().is_empty());
        self
    }

    /// The standalone `kye` binary.
    pub fn kye() -> App {
        App::new("kye", KYE_VERSION).about(KYE_ABOUT)
    }

    /// The binary's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The clap command: kye's subcommands and flags under this binary's name, version and
    /// description, with kye named after.
    pub fn command(&self) -> clap::Command {
        let cmd = Cli::command();
        if *self == App::kye() {
            return cmd;
        }
        let name = self.name;
        // clap keeps versions as `&'static str`; one string per process, built once.
        let version: &'static str =
            Box::leak(format!("{} (kye {KYE_VERSION})", self.version).into_boxed_str());
        let about = match self.about {
            Some(a) => a.to_string(),
            None => format!("{name}: a data source built with kye"),
        };
        cmd.name(name)
            .bin_name(name)
            .version(version)
            .about(about)
            .long_about(None)
            .after_help(format!(
                "{name} is built with kye {KYE_VERSION}: the commands check schemas, validate \
                 data files, and fetch, validate and store the records of the sources linked \
                 into {name}."
            ))
    }

    /// Parses `std::env::args` and runs the command.
    pub fn run(&self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Parses the given arguments (the first is the program name) and runs the command.
    pub fn run_from<I, T>(&self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cmd = self.command();
        let parsed = cmd
            .try_get_matches_from_mut(args)
            .and_then(|m| Cli::from_arg_matches(&m));
        let cli = match parsed {
            Ok(cli) => cli,
            Err(e) => {
                // --help and --version are not errors; every usage error exits 2.
                let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
                let _ = e.format(&mut cmd).print();
                return ExitCode::from(code);
            }
        };
        let g = cli.global.to_global();
        init_logging(&g);
        cli.command.run(&g)
    }
}

/// Parses `std::env::args` and runs the standalone `kye` command ([`App::kye`]). A binary of
/// your own should say who it is: [`App::new`], or `kye::cli::run!()` through the facade.
pub fn run() -> ExitCode {
    App::kye().run()
}

/// Parses the given arguments (the first is the program name) and runs the standalone `kye`
/// command.
pub fn run_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    App::kye().run_from(args)
}

/// Sends kye's `tracing` events (runs, keys, retries, failures) to stderr: none by default,
/// warnings and progress events with `-v`, debug with `-vv` (each HTTP response, each retry),
/// everything with `-vvv`. `KYE_LOG=error|warn|info|debug|trace|off` overrides the flags.
/// Does nothing with `-q` or when the binary installed a subscriber of its own.
pub fn init_logging(g: &Global) {
    use tracing_subscriber::filter::LevelFilter;
    let from_env =
        std::env::var("KYE_LOG")
            .ok()
            .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
                "off" => Some(LevelFilter::OFF),
                "error" => Some(LevelFilter::ERROR),
                "warn" => Some(LevelFilter::WARN),
                "info" => Some(LevelFilter::INFO),
                "debug" => Some(LevelFilter::DEBUG),
                "trace" => Some(LevelFilter::TRACE),
                _ => None,
            });
    let level = match (from_env, g.quiet, g.verbose) {
        (Some(level), _, _) => level,
        (None, true, _) | (None, false, 0) => return,
        (None, false, 1) => LevelFilter::INFO,
        (None, false, 2) => LevelFilter::DEBUG,
        (None, false, _) => LevelFilter::TRACE,
    };
    if level == LevelFilter::OFF {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(g.color_err)
        .with_target(false)
        .try_init();
}

/// Reads and compiles schema files; on failure prints diagnostics (or the I/O error) to stderr.
pub(crate) fn load_schema(
    paths: &[std::path::PathBuf],
    g: &Global,
) -> Result<kye_lang::Schema, ExitCode> {
    let mut sources = kye_lang::SourceMap::new();
    for p in paths {
        match crate::config::read_text_file(p) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_binary_shows_its_own_name_and_version_with_kye_after() {
        let mut cmd = App::new("catsource", "0.3.0")
            .about("Cat facts for the shelter")
            .command();
        assert_eq!(
            cmd.render_version().trim(),
            format!("catsource 0.3.0 (kye {KYE_VERSION})")
        );
        let help = cmd.render_help().to_string();
        assert!(help.starts_with("Cat facts for the shelter\n"), "{help}");
        assert!(help.contains("Usage: catsource"), "{help}");
        assert!(
            help.contains(&format!("catsource is built with kye {KYE_VERSION}")),
            "{help}"
        );
        // Subcommands say the same.
        let sub = cmd
            .find_subcommand_mut("show")
            .expect("show")
            .render_version();
        assert!(sub.contains("0.3.0 (kye "), "{sub}");
        // Without a description, --help still says what it is.
        let help = App::new("catsource", "0.3.0")
            .about("")
            .command()
            .render_help()
            .to_string();
        assert!(
            help.starts_with("catsource: a data source built with kye\n"),
            "{help}"
        );
    }

    #[test]
    fn the_standalone_binary_is_kye() {
        let mut cmd = App::kye().command();
        assert_eq!(cmd.render_version().trim(), format!("kye {KYE_VERSION}"));
        assert!(cmd
            .render_help()
            .to_string()
            .starts_with("kye: check schemas"));
    }
}
