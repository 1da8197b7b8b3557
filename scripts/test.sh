#!/usr/bin/env bash
# The test command (CI runs exactly this through .ci/run):
#
#   1. .venv (Python 3.11, else the default python3 if it is 3.11+): pip install -e .[test]
#   2. ruff check, ruff format --check, mypy, the packaging check, makemigrations --check,
#      Debian's Chromium for the browser tests (scripts/install_browser.sh)
#   3. scripts/install_services.sh: Debian's PostgreSQL and Redis when absent
#   4. pytest on Django 5.2 and SQLite (not the "fuzz" and "hosted" tests), then tests/scale alone (its
#      clusters bring their own PostgreSQL and Redis)
#   5. pytest again (without tests/scale and the "reference" tests) on the newest Django, 6.1 (6.0 if 6.1 is not
#      available) in .venv-dj61 with Python 3.12+, on a throwaway PostgreSQL server. Without a
#      Python 3.12+ interpreter (under CI=true: a failure) that run takes Django 5.2; without
#      PostgreSQL (under CI=true: a failure) it takes SQLite
#
# pytest runs with two xdist workers; PYTEST_WORKERS=N changes that (PYTEST_WORKERS=0: none).
#
# Every step runs even when an earlier one fails; the exit status is non-zero if any failed.
# Arguments are passed to pytest (bash scripts/test.sh -k triggers -x).
# SKIP_DJANGO6=1 runs step 5 on Django 5.2.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONUNBUFFERED=1

started=$SECONDS
failed=()

# section, pip_install, python_at_least, make_venv, base_python
source scripts/lib.sh

# Run one step, remember its failure and carry on with the next one.
step() {
    local name=$1
    shift
    section "$name"
    local t0=$SECONDS
    if "$@"; then
        echo "-- $name: ok ($((SECONDS - t0)) s)"
    else
        echo "-- $name: FAILED ($((SECONDS - t0)) s)"
        failed+=("$name")
    fi
}

# A step that cannot run: a skip on a developer's machine, a failure under CI=true.
skipped() {
    if [[ ${CI:-} == true ]]; then
        section "$1: FAILED (CI=true and $2)"
        failed+=("$1 ($2)")
    else
        section "$1: skipped ($2)"
    fi
}

base_python=$(base_python)

section "Environment .venv"
make_venv .venv "$base_python" "3, 11"
pip_install .venv/bin/python -e ".[test]"
.venv/bin/python -c 'import sys, django; print(f"Python {sys.version.split()[0]}, Django {django.get_version()}")'

step "ruff check" .venv/bin/ruff check .
step "ruff format --check" .venv/bin/ruff format --check .
step "mypy" .venv/bin/mypy scheduling tenants
step "packaging: every package directory is listed in pyproject.toml" \
    .venv/bin/python scripts/check_packages.py
step "makemigrations --check" env DJANGO_SETTINGS_MODULE=tests.settings \
    .venv/bin/python manage.py makemigrations --check --dry-run
# The scale-out tests and the PostgreSQL run start their own servers from these packages.
step "services: PostgreSQL and Redis (Debian packages, installed when absent)" \
    bash scripts/install_services.sh
# The browser tests drive Debian's Chromium; install it when it is missing.
step "Chromium for the browser tests" bash scripts/install_browser.sh
# Two pytest-xdist workers (PYTEST_WORKERS): many tests wait on real processes, so two
# workers finish the suite in about two thirds of the time even on two cores.
workers=(-n "${PYTEST_WORKERS:-2}")
# Some tests run once, in the run that matters for them: "reference" (the calendar against
# croniter: neither the database nor Django's version plays a part) here; "fuzz"
# (Schemathesis, on PostgreSQL) and "hosted" (host projects that bring their own PostgreSQL,
# on the newest Django) in step 5.
step "pytest (Django 5.2)" .venv/bin/python -m pytest -W error::DeprecationWarning:scheduling -q \
    "${workers[@]}" --ignore=tests/scale -m "not fuzz and not hosted" "$@"
# The scale-out tests start clusters of schedulers, Celery workers, PostgreSQL and Redis: one at
# a time, alone on the machine, so that two clusters do not starve each other of the two cores.
step "pytest tests/scale (one cluster at a time)" .venv/bin/python -m pytest \
    -W error::DeprecationWarning:scheduling -q tests/scale "$@"
# The whole suite again, on the newest Django and on a throwaway PostgreSQL server
# (tests/servers.py, on a loopback port): one run covers both, where a run for each doubled
# the time of the test command. Without a Python 3.12+ interpreter (allowed only outside CI)
# the PostgreSQL run takes Django 5.2; without PostgreSQL the Django 6 run takes SQLite.
postgres_missing=$(.venv/bin/python -c \
    'from tests.servers import postgres_available; print(postgres_available() or "")') || true

# Runs the suite (without tests/scale, which ran above) with Python $1, labelled $2, on the
# throwaway PostgreSQL server when there is one.
second_run() {
    local python=$1 label=$2
    shift 2
    if [[ -n $postgres_missing ]]; then
        skipped "pytest ($label, PostgreSQL)" "$postgres_missing"
        step "pytest ($label, SQLite)" "$python" -m pytest \
            -W error::DeprecationWarning:scheduling -q "${workers[@]}" --ignore=tests/scale \
            -m "not reference" "$@"
    else
        step "pytest ($label, PostgreSQL)" "$python" -m tests.servers postgres -- \
            "$python" -m pytest -W error::DeprecationWarning:scheduling -q "${workers[@]}" \
            --ignore=tests/scale -m "not reference" "$@"
    fi
}

new_python=""
if [[ ${SKIP_DJANGO6:-0} == 1 ]]; then
    section "Django 6.1: skipped (SKIP_DJANGO6=1)"
else
    # Django 6.x needs Python 3.12+. pyenv shims exist for versions that are installed but not
    # selected and then fail to run, so each candidate is run before it is trusted.
    for candidate in python3.13 python3.12; do
        if python_at_least "$(command -v "$candidate" || true)" "3, 12"; then
            new_python=$(command -v "$candidate")
            break
        fi
    done
    if [[ -z $new_python ]] && command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.[0-9]+)?$' | sort -rV); do
            candidate="$(pyenv prefix "$version" 2>/dev/null)/bin/python3"
            if python_at_least "$candidate" "3, 12"; then
                new_python=$candidate
                break
            fi
        done
    fi
    if [[ -z $new_python ]]; then
        skipped "Django 6.1" "no Python 3.12+ interpreter found"
    fi
fi

if [[ -n $new_python ]]; then
    section "Environment .venv-dj61"
    make_venv .venv-dj61 "$new_python" "3, 12"
    # The newest Django in the range: 6.1 where the index has it, else 6.0.
    pip_install .venv-dj61/bin/python -e ".[test]" "Django>=6.0,<6.2"
    dj6_version=$(.venv-dj61/bin/python -c 'import django; print(django.get_version())')
    .venv-dj61/bin/python -c 'import sys, django; print(f"Python {sys.version.split()[0]}, Django {django.get_version()}")'
    second_run .venv-dj61/bin/python "Django $dj6_version" "$@"
else
    second_run .venv/bin/python "Django 5.2" "$@"
fi

section "Summary ($((SECONDS - started)) s)"
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "All steps passed."
