#!/usr/bin/env bash
# Runs every benchmark in bench/README.md: builds the release binaries, creates bench/.venv with
# the Python peers (bench/setup-venv.sh), then `kye-bench run` with any arguments given here
# (e.g. `bench/run.sh --only fetch --counts 1000 --reps 5`). Tables go to stdout and
# bench/out/latest.md. Takes ~15 minutes on 2 cores (mostly the Python peers).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kye-bench -p kye
cargo build --release --example pokemon
cargo build --release -p kye-lang --example gen_bench_data
bench/setup-venv.sh
exec target/release/kye-bench run "$@"
