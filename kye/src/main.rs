//! The standalone `kye` command: `kye check`, `kye validate`, ... (see `kye_runtime::cli`).

fn main() -> std::process::ExitCode {
    kye_runtime::cli::run()
}
