#!/usr/bin/env bash
# Install Debian's Chromium for the admin's browser tests (tests/browser/).
#
# Playwright cannot download its own browser builds here, so the tests drive /usr/bin/chromium
# through Playwright's Python package (executable_path=...); `playwright install` is never run.
# scripts/test.sh runs this before pytest. As root it uses apt-get directly, elsewhere sudo
# when that works without a password. When the browser is already installed it does nothing.
# When it cannot install it, it says why; under CI (CI=true) that is a failure, elsewhere it
# exits 0 and the browser tests skip themselves, naming what is missing.
set -euo pipefail

give_up() {
    if [[ ${CI:-} == true ]]; then
        echo "chromium: $1; CI needs it for the browser tests." >&2
        exit 1
    fi
    echo "chromium: $1; the browser tests will be skipped." >&2
    exit 0
}

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    give_up "not installed and no root access"
fi

if ! command -v apt-get >/dev/null 2>&1; then
    give_up "apt-get not found (not Debian?)"
fi

export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core \
        >/dev/null; }; then
    give_up "apt-get install failed"
fi
if [[ ! -x /usr/bin/chromium ]]; then
    give_up "the chromium package did not install /usr/bin/chromium"
fi
echo "chromium: installed $(/usr/bin/chromium --version 2>/dev/null || true)"
