#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nestpool and its bench extra
# (loky, mpire, joblib, psutil, aiomultiprocess, aiohttp) and run the
# benchmark suite; arguments go to benchmarks/run.py.
#
#   bash scripts/bench.sh --quick        # every workload, about 2 minutes
#   bash scripts/bench.sh                # every workload, full size
#   bash scripts/bench.sh --smoke        # seconds: does every workload still run? (CI)
#   bash scripts/bench.sh --only tiny    # one workload
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
python=$(find_python "${NESTPOOL_PY:-3.11}" || command -v python3)
venv=".venv-bench"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[bench]'
exec "$venv/bin/python" benchmarks/run.py "$@"
