#!/usr/bin/env bash
# Set up .venv if needed, check style, run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy (strict on pathopipe/)"
mypy
echo "== package shape"
python scripts/check_structure.py
echo "== pytest"
exec python -m pytest "$@"
