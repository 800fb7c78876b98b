//! Helpers shared by the tests that run the Pokémon example binary (`pokemon.rs`, `kill.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The Pokémon example binary, built on first use.
///
/// Runs `cargo build --workspace --example pokemon` once per test process and locates the
/// executable through cargo's JSON messages, so this works on a fresh clone, with any target
/// directory. `--workspace` resolves features as `cargo test --workspace` does (with every
/// member's dev-dependencies, e.g. tokio's `test-util`), so after that command the build is a
/// no-op; without it cargo rebuilt tokio, reqwest and kye-runtime with other features, 90 s of
/// a cold `cargo test --workspace` on 2 cores.
pub fn example_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--workspace",
                "--example",
                "pokemon",
                "--message-format=json-render-diagnostics",
                "--quiet",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo build --workspace --example pokemon");
        assert!(
            out.status.success(),
            "cargo build --workspace --example pokemon failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "pokemon")
            .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
            .next_back()
            .expect("cargo reported no executable for the pokemon example")
    })
}
