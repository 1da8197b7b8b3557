"""Under ``CI=true`` a skipped test is a failure.

A test that skips because a component is missing (PostgreSQL, Redis, Celery, Chromium,
Playwright, openssl...) proves nothing: under ``CI=true`` the hooks in ``tests/conftest.py`` turn
its skip into a failure that names the reason. Two kinds of skip stay skips: a test that belongs
to another run of the same test command (the SQLite run, the PostgreSQL run; its reason starts
with ``OTHER_RUN``), and a host without IPv6 (a property of the machine's network, not a
component the test command could install).
"""

from __future__ import annotations

import os
from typing import Any

OTHER_RUN = "another run: "
ALLOWED_UNDER_CI = (OTHER_RUN, "no IPv6")


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_reason(report: Any) -> str:
    """The reason of a skipped test or collection report."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def fail_a_skip(report: Any) -> None:
    """Turn a skipped report into a failure, unless its reason is allowed under CI."""
    reason = skip_reason(report)
    if reason.startswith(ALLOWED_UNDER_CI):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where a missing component is a failure: {reason}"
