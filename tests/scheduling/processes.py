"""Real ``runscheduler`` processes for the tests: started against the test database, killed.

``start_scheduler`` runs ``manage.py runscheduler`` (or, with ``launcher``, a ``python -c``
script that ends up running it, e.g. under a moved clock) with its output in ``log``; tests
bound every wait (``wait_for``) and ``stop`` the process in ``finally``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def start_scheduler(
    *args: str, log: Path, launcher: Sequence[str] | None = None, **env: str
) -> subprocess.Popen:
    """Start ``runscheduler`` ``args`` on the test database; ``env`` adds variables."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SCHEDULING_DB_PATH": connection.settings_dict["NAME"],
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    command = [sys.executable, *(launcher or ["manage.py", "runscheduler"]), "-v", "2", *args]
    handle = log.open("ab")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen) -> None:
    """Kill ``process`` (if it still runs) and reap it."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
