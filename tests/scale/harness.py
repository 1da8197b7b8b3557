"""Real PostgreSQL, Redis, scheduler replicas and Celery workers for the scale tests.

Everything is started in its own process group, bounded in time, and killed when the
``Cluster`` closes (``with`` block or ``finally``). The test process talks to the database
through psycopg only: the Django test database of the rest of the suite stays what it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers import PostgresServer, RedisServer, postgres_available, redis_available

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 120


def skip_reason() -> str | None:
    """Why the scale tests cannot run here (a server binary or Celery is missing), or None."""
    for reason in (postgres_available(), redis_available()):
        if reason:
            return reason
    try:
        import celery  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    return None


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that, or None at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Cluster:
    """A database, a broker, and the scheduler and worker processes using them."""

    def __init__(self, directory: Path, *, database: str = "scale") -> None:
        self.directory = directory
        self.postgres = PostgresServer()
        self.redis = RedisServer()
        self.database = database
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[Any] = []

    def __enter__(self) -> Cluster:
        try:
            self.postgres.start()
            self.redis.start()
            self.postgres.create_database(self.database)
            self.manage("migrate", "--no-input", "-v", "0")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        return self.postgres.url_for(self.database)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("SCHEDULING_DB_PATH", "SCHEDULING_TEST_DB_PATH")
        }
        env.update(
            DJANGO_SETTINGS_MODULE="tests.scale.settings",
            DATABASE_URL=self.url,
            DATABASE_CONN_MAX_AGE="600",
            CELERY_BROKER_URL=self.redis.url,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def manage(self, *args: str, **env: str) -> str:
        """Run a management command to completion; return its output."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def python(self, code: str, **env: str) -> str:
        """Run ``code`` with Django set up (as the processes see it); return its output."""
        return self.manage("shell", "-c", code, **env)

    def _spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_scheduler(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        return self._spawn(
            name, [sys.executable, "manage.py", "runscheduler", "-v", "1", *args], **env
        )

    def start_worker(self, name: str, *, concurrency: int = 2, **env: str) -> subprocess.Popen:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "project",
            "worker",
            "-Q",
            "scheduling",
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "-P",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ]
        return self._spawn(name, command, **env)

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name, 2000)}" for name in self.processes)

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def leader_pid(self) -> int | None:
        """The pid of the scheduler holding the lease now, or None."""
        rows = self.query(
            "SELECT holder FROM scheduling_schedulerlease"
            " WHERE name = 'default' AND holder <> '' AND expires_at > now()"
        )
        return int(rows[0][0].split(":")[1]) if rows else None

    def stop(self, name: str, *, timeout: float = 30) -> int | None:
        """SIGTERM a process (and its group), wait for it; SIGKILL at ``timeout``."""
        process = self.processes[name]
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(name)
        return process.returncode

    def kill(self, name: str) -> None:
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGCONT)
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def close(self) -> None:
        for name in list(self.processes):
            self.kill(name)
        for log in self._logs:
            log.close()
        self.redis.close()
        self.postgres.close()


SEED = """
import json, sys
import uuid
from tests.factories import make_scan, make_tenant
fields = json.loads({fields!r})
tenant = make_tenant(slug=uuid.uuid4().hex)
pks = [make_scan(tenant=tenant, **fields).pk for _ in range({count})]
print(json.dumps(pks))
"""


def seed_scans(cluster: Cluster, count: int, **fields: Any) -> list[int]:
    """Create ``count`` scans of one new tenant with ``fields``; return their pks."""
    import json

    output = cluster.python(SEED.format(fields=json.dumps(fields), count=count))
    return json.loads(output.strip().splitlines()[-1])
