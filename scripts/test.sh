#!/usr/bin/env bash
# Create (or reuse) a virtual environment, install nestpool with its test
# extra, and run the checks: ruff, mypy --strict, the typing tests and pytest.
#
#   bash scripts/test.sh                 # Python 3.11 (or python3), everything
#   NESTPOOL_PY=3.13 bash scripts/test.sh  # another Python
#   bash scripts/test.sh -k routing      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh

want="${NESTPOOL_PY:-3.11}"
python=$(find_python "$want" || true)
if [ -z "$python" ]; then
    python=$(command -v python3)
    echo "scripts/test.sh: Python $want not found, using $python" >&2
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=".venv-test-$version"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -U pip >/dev/null
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== Python $version: ruff"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
echo "== Python $version: mypy --strict"
"$venv/bin/mypy" --strict nestpool
echo "== Python $version: pytest"
"$venv/bin/python" -m pytest "$@"
