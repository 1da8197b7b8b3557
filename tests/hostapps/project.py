"""A host project on its own settings module and database, driven through ``manage.py``.

The tenant model is fixed at the first ``migrate`` (``SCHEDULING_TENANT_MODEL``), so a host
whose tenant is its package's model runs in processes of its own, on a scratch database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.servers import scratch_database

ROOT = Path(__file__).resolve().parents[2]


class HostProject:
    """``manage.py`` commands and shell scripts of one host project on one database."""

    def __init__(self, settings: str, database: str, **environment: str) -> None:
        self.settings = settings
        self.database = database
        # What the project's processes get besides (DATABASE_URL for a PostgreSQL server).
        self.environment = environment
        self.migrate_log = ""  # what the first ``migrate`` wrote to stderr

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "SCHEDULING_TEST_DB_PATH"}
        env.update(
            DJANGO_SETTINGS_MODULE=self.settings,
            SCHEDULING_DB_PATH=self.database,
            PYTHONUNBUFFERED="1",
            **self.environment,
        )
        env.update(extra)
        return env

    def manage(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def json(self, code: str, **env: str) -> Any:
        """Run ``code`` in ``manage.py shell``; return the JSON it prints last."""
        result = self.manage("shell", "-c", code, **env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start(self, *args: str, log: Path, **env: str) -> subprocess.Popen:
        """Start ``manage.py args`` in the background, its output in ``log``."""
        with log.open("ab") as handle:
            return subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=self.env(**env),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )


@contextmanager
def migrated(settings: str, directory: Path) -> Iterator[HostProject]:
    """Yield the host project of ``settings`` on a new database, migrated."""
    with scratch_database(directory) as database:
        project = HostProject(settings, database)
        migrate = project.manage("migrate", "--noinput", "-v", "0")
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        project.migrate_log = migrate.stderr
        yield project
