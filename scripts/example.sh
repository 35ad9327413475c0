#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nestpool and run the main
# example (the tutorial's collating program, rewritten with nestpool).
#   bash scripts/example.sh                  # nestpool's own worker processes
#   bash scripts/example.sh --dask           # on a local Dask cluster
#   bash scripts/example.sh --scheduler tcp://127.0.0.1:8786
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
python=$(find_python "${NESTPOOL_PY:-3.11}" || command -v python3)
venv=".venv-example"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
extra=""
case " $* " in
    *" --dask "*|*" --scheduler"*) extra="[dask]" ;;  # the Dask switch needs distributed
esac
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".$extra"
exec "$venv/bin/python" examples/collate.py "$@"
