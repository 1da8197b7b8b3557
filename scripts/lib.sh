# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run).

section() { printf '\n==== %s ====\n' "$*"; }

# Quiet pip; drop the warnings about package locations configured on some machines that do
# not exist (they repeat for every package and hide the real errors).
pip_install() {
    local python=$1
    shift
    "$python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }
}

# Whether the interpreter $1 runs and is at least version $2 ("3, 12").
python_at_least() {
    [[ -n $1 ]] && timeout 30 "$1" -c "import sys; sys.exit(sys.version_info[:2] < ($2))" \
        >/dev/null 2>&1
}

# Create the virtualenv $1 with interpreter $2 unless a working one (>= $3) is there already.
make_venv() {
    local venv=$1 python=$2 minimum=$3
    if ! python_at_least "$venv/bin/python" "$minimum"; then
        rm -rf "$venv"
        echo "Creating $venv with $("$python" --version 2>&1) ($python)"
        "$python" -m venv "$venv"
    fi
}

# Print the path of python3.11 (else python3) if it is 3.11 or newer; exit 2 otherwise.
base_python() {
    local candidate
    for candidate in python3.11 python3; do
        if python_at_least "$(command -v "$candidate" || true)" "3, 11"; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is required (tried python3.11, python3)." >&2
    exit 2
}
