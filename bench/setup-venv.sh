#!/usr/bin/env bash
# Creates bench/.venv (gitignored) and installs the Python peers the benchmarks compare kye against:
#   - kye==0.1.2 with pandas==2.2.3: the original Python implementation of the kye language;
#   - dlt with its duckdb and postgres destinations (psycopg2-binary): the REST-to-database
#     loader most people use today.
# Only PyPI is used (wheels only: nothing compiled). Safe to re-run: an existing venv is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet --only-binary=:all: -r "$here/requirements.txt"
"$venv/bin/python" -m pip freeze > "$here/.venv/freeze.txt"
echo "bench/.venv ready: $("$venv/bin/python" --version); peers:"
grep -iE '^(kye|pandas|dlt|duckdb|requests|psycopg2-binary)==' "$venv/freeze.txt" || true
