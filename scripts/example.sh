#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nestpool and run the main
# example (the seed tutorial's collating program, rewritten with nestpool).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
python=$(find_python "${NESTPOOL_PY:-3.11}" || command -v python3)
venv=".venv-example"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e .
exec "$venv/bin/python" examples/collate.py "$@"
