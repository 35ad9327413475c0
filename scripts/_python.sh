# Sourced by the other scripts: find a Python interpreter for a version prefix.
# Usage: find_python 3.10  -> prints a path, or nothing.
find_python() {
    local want="$1" candidate root
    for candidate in "python$want" ; do
        # A pyenv shim exists for every installed version but fails unless
        # that version is selected: accept only an interpreter that runs.
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c '' >/dev/null 2>&1; then
            command -v "$candidate"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        for candidate in $(ls -d "$root"/versions/"$want".* 2>/dev/null | sort -V -r); do
            if [ -x "$candidate/bin/python" ]; then
                echo "$candidate/bin/python"; return 0
            fi
        done
    fi
    return 1
}
