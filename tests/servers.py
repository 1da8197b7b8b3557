"""Throwaway PostgreSQL and Redis servers on loopback, for tests and scripts.

Each server lives in its own temporary directory, listens on a free TCP port of 127.0.0.1 and
is stopped (and its directory removed) by ``stop()``, by leaving the ``with`` block, or at
interpreter exit at the latest: no test run leaves a server behind.

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and ``postgres`` run
as the ``postgres`` system user that Debian's package creates, and the data directory belongs
to it.

From the command line, a server wraps one command and hands its address on in the
environment (``DATABASE_URL`` or ``REDIS_URL``); the exit status is the command's::

    python -m tests.servers postgres -- python -m pytest -q
    python -m tests.servers redis -- python bench/throughput.py
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Servers started by this process and not stopped yet; stopped at exit.
_running: set[_Server] = set()

POSTGRES_USER = "postgres"
POSTGRES_SYSTEM_USER = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def postgres_bin_dir() -> Path | None:
    """Return the directory of the newest PostgreSQL server binaries, or None."""
    # Debian keeps the server binaries out of PATH, one directory per major version.
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key, reverse=True
    )
    for candidate in candidates:
        directory = Path(candidate).parent
        if (directory / "initdb").exists():
            return directory
    on_path = shutil.which("postgres")
    if on_path:
        directory = Path(on_path).resolve().parent
        if (directory / "initdb").exists():
            return directory
    return None


def _postgres_run_as() -> str | None:
    """Return the system user to run PostgreSQL as (None: this process's user)."""
    return POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None


def postgres_available() -> str | None:
    """Return why a PostgreSQL server cannot be started here, or None when it can."""
    if postgres_bin_dir() is None:
        return (
            "PostgreSQL is not installed (no postgres/initdb binaries; "
            "scripts/install_services.sh installs Debian's postgresql package)"
        )
    user = _postgres_run_as()
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root and there is no '{user}' system user to run PostgreSQL as"
    return None


def redis_available() -> str | None:
    """Return why a Redis server cannot be started here, or None when it can."""
    if shutil.which("redis-server") is None:
        return (
            "Redis is not installed (no redis-server binary; "
            "scripts/install_services.sh installs Debian's redis-server package)"
        )
    return None


class ServerError(RuntimeError):
    """A throwaway server could not be started."""


class _Server:
    """A server process in a temporary directory on a loopback port."""

    name = "server"

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __hash__(self) -> int:
        return id(self)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        assert self.directory is not None, "the server was never started"
        return self.directory / f"{self.name}.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _make_directory(self) -> Path:
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix=f"test-{self.name}-"))
            _running.add(self)
        return self.directory

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_options(self) -> dict:
        return {}

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        """Start the server (again, on the same directory and port) and wait until it answers."""
        if self.running:
            return
        self._make_directory()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that a hard kill also reaches its children.
            start_new_session=True,
            **self._popen_options(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise ServerError(
                    f"{self.name} exited with status {self.process.returncode} on start:\n"
                    f"{self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.1)
        self.stop(mode="immediate")
        raise ServerError(f"{self.name} did not answer within {START_TIMEOUT:.0f} s")

    def _stop_signal(self, mode: str) -> int:
        return signal.SIGTERM

    def stop(self, mode: str = "fast") -> None:
        """Stop the server process; the directory stays for a later start()."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self._stop_signal(mode))
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        if process is not None:
            # Children of a killed postmaster (or of anything else) go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._close_log()

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server on the same data and port."""
        self.stop(mode=mode)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self.stop(mode="immediate")
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None
            _running.discard(self)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class PostgresServer(_Server):
    """A PostgreSQL cluster in a temporary directory, trusting local connections."""

    name = "postgres"

    def __init__(self, *, port: int | None = None, max_connections: int = 200) -> None:
        super().__init__(port=port)
        reason = postgres_available()
        if reason:
            raise ServerError(reason)
        self.bin_dir = postgres_bin_dir()
        self.max_connections = max_connections
        self.run_as = _postgres_run_as()

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None, "the server was never started"
        return self.directory / "data"

    def url_for(self, database: str = "postgres") -> str:
        """Return the URL of `database` on this server (DATABASE_URL form)."""
        return f"postgres://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for()

    def _popen_options(self) -> dict:
        if self.run_as is None:
            return {}
        account = pwd.getpwnam(self.run_as)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _make_directory(self) -> Path:
        created = self.directory is None
        directory = super()._make_directory()
        if created:
            if self.run_as is not None:
                account = pwd.getpwnam(self.run_as)
                os.chown(directory, account.pw_uid, account.pw_gid)
            self._initdb()
        return directory

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                POSTGRES_USER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                # The C locale sorts text by code point, as SQLite does.
                "--locale",
                "C",
                "--no-sync",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.directory,
            **self._popen_options(),
        )
        if result.returncode:
            raise ServerError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "max_connections": str(self.max_connections),
            # A throwaway server: durability buys nothing and costs time.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
        }
        command = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def _stop_signal(self, mode: str) -> int:
        # PostgreSQL's shutdown modes, as pg_ctl sends them.
        return {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]

    def _ready(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                # Through this server's own socket directory: another server on the same
                # TCP port (one that took the port first) must not pass for this one.
                f"--host={self.directory}",
                f"--port={self.port}",
                f"--username={POSTGRES_USER}",
                "--timeout=1",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )
        return result.returncode == 0

    def psql(
        self, sql: str, *, database: str = "postgres", variables: dict[str, str] | None = None
    ) -> list[str]:
        """Run `sql` with psql and return the output rows (fields separated by |).

        `variables` are psql variables: ``:'name'`` in `sql` is the quoted literal.
        """
        command = [
            str(self.bin_dir / "psql"),
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={self.url_for(database)}",
        ]
        command += [f"--set={name}={value}" for name, value in (variables or {}).items()]
        # Through stdin: psql interpolates variables there, not in --command.
        result = subprocess.run(command, input=sql, capture_output=True, text=True, timeout=60)
        if result.returncode:
            raise ServerError(f"psql failed: {result.stderr.strip()}")
        return [line for line in result.stdout.splitlines() if line]

    def create_database(self, name: str) -> str:
        """Create the database `name` and return its URL."""
        self.psql('CREATE DATABASE :"name"', variables={"name": name})
        return self.url_for(name)

    def terminate_backends(self, application_name: str | None = None) -> int:
        """Terminate client connections (only those of `application_name` if given).

        Returns how many were terminated; psql's own connection is spared.
        """
        sql = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        variables = {}
        if application_name is not None:
            sql += " AND application_name = :'application_name'"
            variables["application_name"] = application_name
        return int(self.psql(sql, variables=variables)[0])


class RedisServer(_Server):
    """A Redis server that keeps nothing on disk."""

    name = "redis"

    def __init__(self, *, port: int | None = None) -> None:
        super().__init__(port=port)
        reason = redis_available()
        if reason:
            raise ServerError(reason)
        self.binary = shutil.which("redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
        ]

    def _ask(self, command: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(65536)

    def ping(self) -> bool:
        """Whether the server answers PING."""
        try:
            return self._ask(b"PING").startswith(b"+PONG")
        except OSError:
            return False

    def _ready(self) -> bool:
        # The process on the port must be ours, not another server that took the port first.
        try:
            info = self._ask(b"INFO server")
        except OSError:
            return False
        return f"process_id:{self.process.pid}\r\n".encode() in info


@contextlib.contextmanager
def scratch_database(directory: Path):
    """Yield the NAME of a new, empty database for the processes a test starts.

    A file in ``directory`` on SQLite; on PostgreSQL a database on the test run's server,
    dropped afterwards. For ``SCHEDULING_DB_PATH``.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        yield str(directory / "scratch.sqlite3")
        return
    name = f"scratch_{uuid.uuid4().hex[:16]}"
    server = maintenance_connection(connection.settings_dict)
    try:
        server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        server.close()


def maintenance_connection(settings_dict: dict):
    """Return an autocommit psycopg connection to the ``postgres`` database of the server that
    a Django DATABASES entry names (to create, drop or lock out other databases)."""
    import psycopg

    return psycopg.connect(
        dbname="postgres",
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
        user=settings_dict["USER"] or None,
        password=settings_dict["PASSWORD"] or None,
        autocommit=True,
    )


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.close()


SERVERS = {
    "postgres": (PostgresServer, "DATABASE_URL", postgres_available),
    "redis": (RedisServer, "REDIS_URL", redis_available),
}


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    """Start the named servers, run the command after ``--`` with their URLs, stop them."""
    usage = f"usage: python -m tests.servers {{{'|'.join(SERVERS)}}}... -- command [args...]"
    if "--" not in argv:
        print(usage, file=sys.stderr)
        return 2
    split = argv.index("--")
    names, command = argv[:split], argv[split + 1 :]
    if not names or not command or any(name not in SERVERS for name in names):
        print(usage, file=sys.stderr)
        return 2
    for name in names:
        reason = SERVERS[name][2]()
        if reason:
            print(f"skipped: {reason}", file=sys.stderr)
            return 0
    # SIGTERM (a CI timeout) must still stop the command and the servers.
    signal.signal(signal.SIGTERM, _raise_exit)
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        for name in names:
            server_class, variable, _available = SERVERS[name]
            server = stack.enter_context(server_class())
            env[variable] = server.url
            print(f"{name} listening on 127.0.0.1:{server.port} ({variable})", flush=True)
        try:
            process = subprocess.Popen(command, env=env)
        except FileNotFoundError:
            print(f"error: command not found: {command[0]}", file=sys.stderr)
            return 127
        try:
            return process.wait()
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
