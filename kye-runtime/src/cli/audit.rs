//! `kye audit [--limit N]`: the audit log of `kye serve`, newest first: time, token, action,
//! model, key, source (store or fetched) and status.

use std::process::ExitCode;

use clap::Args;

use super::common::{fail, print_json, Table};
use super::token::open;
use super::{Format, Global, Run, EXIT_OK, EXIT_USAGE};

/// Arguments of `kye audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// At most N rows, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,
}

impl Run for AuditArgs {
    fn run(self, g: &Global) -> ExitCode {
        let mut store = match open(g) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let rows = match store.audit(self.limit) {
            Ok(r) => r,
            Err(e) => return fail(g, &e, EXIT_USAGE),
        };
        if g.format == Format::Json {
            print_json(&rows);
            return ExitCode::from(EXIT_OK);
        }
        let mut t = Table::new([
            "time", "token", "action", "model", "key", "source", "status",
        ]);
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for a in &rows {
            t.row(vec![
                a.time.to_string(),
                dash(&a.token),
                a.action.clone(),
                dash(&a.model),
                dash(&a.key),
                dash(&a.source),
                a.status.to_string(),
            ]);
        }
        out_raw!("{}", t.render(g.format));
        ExitCode::from(EXIT_OK)
    }
}
