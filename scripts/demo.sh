#!/usr/bin/env bash
# The demo, in one command: set up .venv, migrate the SQLite database, seed the demo tenant,
# admin user and schedules, then run the scheduler and the development server together.
#
#   bash scripts/demo.sh                 # until Ctrl-C
#   DEMO_SECONDS=60 bash scripts/demo.sh # stop by itself after 60 seconds
#
# Environment: DEMO_PORT (default 8000), DEMO_ADMIN_PASSWORD (default: a new random one),
# SCHEDULING_DB_PATH (default: db.sqlite3 in the repository).
# Ctrl-C or SIGTERM stops both processes: runscheduler lets running executions finish, marks
# the rest interrupted, releases its lease and exits 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONUNBUFFERED=1

port=${DEMO_PORT:-8000}
seconds=${DEMO_SECONDS:-}
if [[ -n $seconds && ! $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "error: DEMO_SECONDS must be a whole number of seconds, got '$seconds'." >&2
    exit 2
fi

# section, pip_install, python_at_least, make_venv, base_python
source scripts/lib.sh

section "Setting up .venv"
if ! python_at_least .venv/bin/python "3, 11"; then
    make_venv .venv "$(base_python)" "3, 11"
fi
pip_install .venv/bin/python -e .
python=.venv/bin/python

section "Migrating the database"
$python manage.py migrate --no-input -v 0
echo "Database: ${SCHEDULING_DB_PATH:-db.sqlite3} is up to date."

section "Seeding the demo"
if [[ -z ${DEMO_ADMIN_PASSWORD:-} ]]; then
    DEMO_ADMIN_PASSWORD=$($python -c 'import secrets; print(secrets.token_urlsafe(12))')
fi
export DEMO_ADMIN_PASSWORD
$python manage.py seed_demo --port "$port"

section "Starting the scheduler and the web server"
scheduler_pid="" server_pid=""

# Stop both children: SIGTERM, then wait (runscheduler's grace period is 30 s by default);
# whatever is still alive after 45 s is killed.
stop_children() {
    trap - INT TERM
    local pid
    for pid in $scheduler_pid $server_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 45))
    for pid in $scheduler_pid $server_pid; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2 || true
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "Process $pid did not stop in time; killing it." >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

interrupted=""
on_signal() {
    interrupted=$1
    echo
    echo "Received SIG$1: stopping the scheduler and the web server..."
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'stop_children' EXIT

$python manage.py runscheduler &
scheduler_pid=$!
$python manage.py runserver --noreload "127.0.0.1:$port" &
server_pid=$!

# Wait (up to 20 s) for the server to answer before printing where to go.
$python - "$port" "$server_pid" <<'PY' || true
import os, sys, time, urllib.request

url, pid = f"http://127.0.0.1:{sys.argv[1]}/admin/login/", int(sys.argv[2])
for _ in range(100):
    try:
        os.kill(pid, 0)
        urllib.request.urlopen(url, timeout=1).close()
        break
    except ProcessLookupError:
        break
    except OSError:
        time.sleep(0.2)
PY

cat <<BANNER

  Demo running.
    Admin:       http://127.0.0.1:$port/admin/
    API:         http://127.0.0.1:$port/api/
    Log in as:   admin / $DEMO_ADMIN_PASSWORD
  The first executions appear within a minute (Scheduling > Executions).
  ${seconds:+Stopping by itself after $seconds s. }Press Ctrl-C to stop.

BANNER

deadline=$((SECONDS + ${seconds:-0}))
while [[ -z $interrupted ]]; do
    if ! kill -0 "$scheduler_pid" 2>/dev/null || ! kill -0 "$server_pid" 2>/dev/null; then
        break
    fi
    if [[ -n $seconds ]] && ((SECONDS >= deadline)); then
        echo "DEMO_SECONDS=$seconds reached: stopping the scheduler and the web server..."
        break
    fi
    # A short sleep in the foreground: a signal's trap runs as soon as it returns.
    sleep 0.5 || true  # interrupted by Ctrl-C: the trap has run
done

# Without a signal, a child that is gone ended by itself (Ctrl-C reaches the whole process
# group, so after one the scheduler may well have stopped first, as it should).
unexpected=""
if [[ -z $interrupted ]]; then
    for pid in $scheduler_pid $server_pid; do
        if ! kill -0 "$pid" 2>/dev/null; then
            unexpected=$pid
        fi
    done
fi
stop_children
trap - EXIT
set +e
wait "$scheduler_pid"
scheduler_status=$?
wait "$server_pid"
server_status=$?
set -e
echo "runscheduler exited with status $scheduler_status; runserver with status $server_status."

if [[ -n $unexpected ]]; then
    echo "error: a process (pid $unexpected) ended by itself; see its output above." >&2
    exit 1
fi
# runserver has no SIGTERM handler: 143 (128 + SIGTERM) is how it stops.
if ((scheduler_status != 0)) || ((server_status != 0 && server_status != 143)); then
    exit 1
fi
