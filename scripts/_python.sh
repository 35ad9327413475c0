# Sourced by the other scripts: find a working Python interpreter for a
# version prefix. Usage: find_python 3.10  -> prints a path, or fails.
find_python() {
    local want="$1" candidate root
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        for candidate in $(ls -d "$root"/versions/"$want".* 2>/dev/null | sort -V -r); do
            if [ -x "$candidate/bin/python" ]; then
                echo "$candidate/bin/python"; return 0
            fi
        done
    fi
    for candidate in "python$want" python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" 2>/dev/null; then
            command -v "$candidate"; return 0
        fi
    done
    return 1
}
