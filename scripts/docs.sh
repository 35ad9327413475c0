#!/usr/bin/env bash
# Create (or reuse) a virtual environment with nestpool's docs extra and build
# the documentation site with `mkdocs build --strict` (any warning fails: a
# broken link, a page missing from the nav, a docstring mkdocstrings cannot
# render). The site goes to site/ (ignored by git). Needs npm once, for the
# pinned copy of Mermaid the site serves.
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

# Mermaid draws the diagrams in the reader's browser. The theme would fetch it
# from a CDN when a page opens (a page read offline, or behind a firewall,
# would show the diagram's source instead); the site serves its own copy,
# taken from the npm registry once, pinned and checked.
mermaid_version=11.17.2
mermaid_sha256=581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8
mermaid=docs/javascripts/vendor/mermaid.min.js  # ignored by git
if ! echo "$mermaid_sha256  $mermaid" | sha256sum --check --status 2>/dev/null; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "mermaid@$mermaid_version" >/dev/null)
    tar -xzf "$tmp/mermaid-$mermaid_version.tgz" -C "$tmp" package/dist/mermaid.min.js
    mkdir -p "$(dirname "$mermaid")"
    mv "$tmp/package/dist/mermaid.min.js" "$mermaid"
    rm -rf "$tmp"
    echo "$mermaid_sha256  $mermaid" | sha256sum --check --status || {
        echo "scripts/docs.sh: $mermaid is not mermaid $mermaid_version as pinned" >&2
        exit 1
    }
fi

export NO_MKDOCS_2_WARNING=1  # Material's end-of-life banner
if [ "${1:-build}" = "serve" ]; then
    exec "$venv/bin/mkdocs" serve --dev-addr 127.0.0.1:8000
fi
exec "$venv/bin/mkdocs" build --strict
