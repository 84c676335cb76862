#!/usr/bin/env bash
# Creates .venv at the repository root with the Python readers the tests use (pyarrow,
# prometheus_client, numpy, Qlib). Run once before `cargo test -p dataout -p metrics`;
# CI runs it first. Idempotent: re-running only installs what is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
    "$python" -m venv "$root/.venv"
fi
pip=("$root/.venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install -r "$root/requirements-test.txt"
# Qlib's data layer only: its declared dependencies pull in mlflow, jupyter, lightgbm and more
# that reading a data directory never imports (the requirements file lists what it does).
"${pip[@]}" install --no-deps pyqlib==0.9.7
"$root/.venv/bin/python" - <<'PY'
import numpy, pyarrow, prometheus_client, qlib
print(f"venv ready: numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, "
      f"prometheus_client {prometheus_client.__version__ if hasattr(prometheus_client, '__version__') else ''}, qlib {qlib.__version__}")
PY
