#!/usr/bin/env bash
# The package as it ships: build the sdist and the wheel (python -m build),
# check them (twine check --strict), install the wheel, not editable, into a
# fresh virtual environment, and run the examples (their output checked) and
# a smoke test with it, from a copy outside the source tree, so that only the
# installed nestpool can be imported. Prints the wheel's files and size.
#
#   bash scripts/package.sh            # dist/ gets the sdist and the wheel
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
python=$(find_python "${NESTPOOL_PY:-3.11}" || command -v python3)
venv=".venv-release"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[release]'

rm -rf dist
"$venv/bin/python" -m build --outdir dist . >/dev/null
"$venv/bin/python" -m twine check --strict dist/*
wheel=$(ls dist/nestpool-*.whl)
"$venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as wheel:
    names = wheel.namelist()
import os
print(f"{os.path.basename(path)}: {os.path.getsize(path) / 1024:.1f} KiB, {len(names)} files")
for name in names:
    print(f"    {name}")
assert "nestpool/py.typed" in names, "the wheel has no py.typed"
stray = [n for n in names if not n.startswith(("nestpool/", "nestpool-"))]
assert not stray, f"the wheel ships more than the package: {stray}"
PY

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
cp -r examples "$work/examples"
cp scripts/smoke_installed.py "$work/"
cd "$work"
venv/bin/python smoke_installed.py
# collate.py, nested.py, crawl.py and hash_tree.py, their output checked.
timeout 600 venv/bin/python examples/check_output.py
for example in examples/*.py; do
    case "$example" in
        examples/collate.py|examples/nested.py|examples/crawl.py|examples/async_crawl.py|examples/hash_tree.py) continue ;;
        examples/check_output.py|examples/_*.py) continue ;;
    esac
    echo "--- $example"
    timeout 300 venv/bin/python "$example"
done
