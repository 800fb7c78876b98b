#!/usr/bin/env bash
# The benchmarks' smoke mode for .ci/run: the same program with small N, one run each, in the
# debug build the test run already made. Python peers run only if bench/.venv exists. Checks that
# every side still works end to end (each side verifies its own row counts); the figures of a
# smoke run mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p kye-bench -p kye
cargo build --example pokemon
cargo build -p kye-lang --example gen_bench_data
exec target/debug/kye-bench run --smoke "$@"
