# Sourced by demo.sh and test.sh: create or reuse .venv in the repo and install the package.
# Reinstalls only when pyproject.toml changed (a stamp file holds its hash).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
EXTRAS="${PATHOPIPE_EXTRAS:-dev,slurm,s3,transformers}"
if [ ! -x "$REPO/.venv/bin/python" ]; then
  echo "== creating $REPO/.venv"
  "$PYTHON" -m venv "$REPO/.venv"
  "$REPO/.venv/bin/python" -m pip install -q --upgrade pip
fi
stamp="$REPO/.venv/.pathopipe-installed"
want="$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)-$EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing pathopipe[$EXTRAS] into .venv"
  if ! "$REPO/.venv/bin/python" -m pip install -e "$REPO[$EXTRAS]" > "$REPO/.venv/install.log" 2>&1; then
    tail -40 "$REPO/.venv/install.log"
    echo "pip install failed; full log in .venv/install.log" >&2
    exit 1
  fi
  "$REPO/.venv/bin/python" -c "import pathopipe, openslide, zarr"
  echo "$want" > "$stamp"
fi
export PATH="$REPO/.venv/bin:$PATH"
