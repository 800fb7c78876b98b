//! `kye transform [MODEL]`: runs the transformers (`#[kye::transform]`) producing MODEL, or
//! all of them, over the stored records of their inputs. Only outputs whose inputs changed
//! (or are new) are computed again.
//!
//! Exit codes: `0` every output stored or unchanged; `65` some outputs were rejected or some
//! calls failed; `2` the model, the registry or the store is wrong.

use std::process::ExitCode;

use clap::Args;

use super::common::{fail, print_json, setup_failed, tokio_runtime};
use super::{Format, Global, Run, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::runtime::TransformSummary;

/// Arguments of `kye transform`.
#[derive(Debug, Clone, Args)]
pub struct TransformArgs {
    /// The output model whose transformers run (all transformers when omitted).
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// Compute every output again, whatever its lineage says (after the transformer's code
    /// changed: lineage tracks the inputs, not the code).
    #[arg(long)]
    pub refresh: bool,
}

impl TransformArgs {
    /// Runs the transformers and returns their summary (`Err` holds the exit code, the error
    /// already printed).
    pub fn execute(&self, g: &Global) -> Result<TransformSummary, ExitCode> {
        crate::registry::registry().map_err(|e| fail(g, &e, EXIT_USAGE))?;
        let rt = super::common::runtime_builder(g)
            .and_then(|b| b.build())
            .map_err(|e| setup_failed(g, &e))?;
        let tokio = tokio_runtime().map_err(|e| fail(g, &e, EXIT_USAGE))?;
        let model = self.model.as_deref();
        tokio
            .block_on(async {
                if self.refresh {
                    rt.retransform(model).await
                } else {
                    rt.transform(model).await
                }
            })
            .map_err(|e| fail(g, &e, EXIT_USAGE))
    }
}

/// The exit code a transform summary calls for: 65 with rejected outputs or failed calls.
pub fn exit_code(summary: &TransformSummary) -> u8 {
    if summary.rejected() > 0 || summary.failed() > 0 {
        EXIT_DATA
    } else {
        EXIT_OK
    }
}

/// Prints a transform summary: one line per transformer (JSON with `--format json`).
pub fn print_summary(summary: &TransformSummary, g: &Global) {
    if g.format == Format::Json {
        print_json(summary);
        return;
    }
    if g.quiet && exit_code(summary) == EXIT_OK {
        return;
    }
    out!("{summary}");
    if summary.rejected() > 0 {
        out!("the rejected outputs are kept with their errors: `rejects` shows them");
    }
}

impl Run for TransformArgs {
    fn run(self, g: &Global) -> ExitCode {
        match self.execute(g) {
            Ok(summary) => {
                print_summary(&summary, g);
                ExitCode::from(exit_code(&summary))
            }
            Err(code) => code,
        }
    }
}
