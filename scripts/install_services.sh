#!/usr/bin/env bash
# Install the servers that the scale-out tests start on loopback ports (tests/servers.py):
# Debian's `postgresql` and `redis-server` packages, each only when its binaries are absent.
#
# Runs unattended (CI: root, no stdin). When a package cannot be installed (not root, no
# apt-get, no network) this says why; under CI=true it exits 1 (a failed step of the test
# command), elsewhere it exits 0 and the tests that need the server skip with the reason.
set -uo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

have_redis() {
    command -v redis-server >/dev/null
}

# Under CI=true a missing server is a failure (the tests that need it would only skip);
# elsewhere a warning, and those tests skip with the reason.
give_up() {
    if [[ ${CI:-} == true ]]; then
        echo "error: $1; CI=true needs PostgreSQL and Redis for the tests." >&2
        exit 1
    fi
    echo "warning: $1; the tests that need them skip."
    exit 0
}

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)

if ((${#missing[@]} == 0)); then
    echo "PostgreSQL and Redis are installed."
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    give_up "not installing ${missing[*]} (no apt-get)"
fi

sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        give_up "not installing ${missing[*]} (not root, no passwordless sudo)"
    fi
fi

apt_get() {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get \
        -o Dpkg::Use-Pty=0 -o APT::Get::Assume-Yes=true -qq "$@" </dev/null
}

# The tests start their own servers: the packages' service units must not start a cluster
# on the default port (and there may be no init system to start it anyway). policy-rc.d
# answers "do not start" to the packages' maintainer scripts while they install.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null &&
        "${sudo[@]}" chmod 755 "$policy" && added_policy=1
fi
remove_policy() {
    if ((added_policy)); then
        "${sudo[@]}" rm -f "$policy"
    fi
}
trap remove_policy EXIT

echo "Installing ${missing[*]} with apt-get ..."
log=$(mktemp)
if ! apt_get install --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    # A stale package list is the usual reason: refresh it once and try again.
    apt_get update >>"$log" 2>&1
    apt_get install --no-install-recommends "${missing[@]}" >>"$log" 2>&1
fi

status=0
have_postgres || status=1
have_redis || status=1
if ((status)); then
    tail -n 20 "$log"
    rm -f "$log"
    give_up "could not install ${missing[*]}"
fi
echo "Installed ${missing[*]}."
rm -f "$log"
exit 0
