#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nestpool's docs extra and build
# the documentation site with `mkdocs build --strict` (any warning fails: a
# broken link, a page missing from the nav, a docstring mkdocstrings cannot
# render). The site goes to site/ (ignored by git).
#
#   bash scripts/docs.sh            # build, strictly
#   bash scripts/docs.sh serve      # preview on http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
python=$(find_python "${NESTPOOL_PY:-3.11}" || command -v python3)
venv=".venv-docs"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[docs]'
export NO_MKDOCS_2_WARNING=1  # Material's end-of-life banner
if [ "${1:-build}" = "serve" ]; then
    exec "$venv/bin/mkdocs" serve --dev-addr 127.0.0.1:8000
fi
exec "$venv/bin/mkdocs" build --strict
