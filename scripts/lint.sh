#!/usr/bin/env bash
# The project's lint, one list for `make lint` and .ci/run: ruff's checks, ruff's
# formatting (check only), and mypy (strict, over app and tests: [tool.mypy]).
# Uses the venv's tools ($VENV, default .venv); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

"$VENV/bin/ruff" check app tests bench
"$VENV/bin/ruff" format --check app tests bench
"$VENV/bin/mypy"
