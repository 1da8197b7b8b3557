"""The throwaway servers that the scale-out tests and scripts start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.servers import (
    PostgresServer,
    RedisServer,
    ServerError,
    postgres_available,
    postgres_bin_dir,
    redis_available,
)

needs_postgres = pytest.mark.skipif(bool(postgres_available()), reason=str(postgres_available()))
needs_redis = pytest.mark.skipif(bool(redis_available()), reason=str(redis_available()))


@needs_postgres
def test_postgres_server_answers_queries_and_keeps_its_data_across_a_restart():
    with PostgresServer() as server:
        assert server.url == f"postgres://postgres@127.0.0.1:{server.port}/postgres"
        server.psql("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('before')")

        server.restart()

        assert server.running
        assert server.psql("SELECT value FROM kept") == ["before"]
        data_dir = server.directory
    assert not server.running
    assert not data_dir.exists()


@needs_postgres
def test_postgres_server_is_down_between_stop_and_start_on_the_same_port():
    psycopg = pytest.importorskip("psycopg")
    with PostgresServer() as server:
        port = server.port
        server.stop(mode="fast")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, connect_timeout=2)

        server.start()

        assert server.port == port
        with psycopg.connect(server.url) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)


@needs_postgres
def test_terminate_backends_drops_only_the_named_application_connections():
    psycopg = pytest.importorskip("psycopg")
    with PostgresServer() as server:
        victim = psycopg.connect(server.url, application_name="scheduler", autocommit=True)
        bystander = psycopg.connect(server.url, application_name="admin", autocommit=True)
        try:
            assert server.terminate_backends("scheduler") == 1

            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")
            assert bystander.execute("SELECT 1").fetchone() == (1,)
            assert server.terminate_backends() == 1
        finally:
            victim.close()
            bystander.close()


@needs_postgres
def test_create_database_returns_a_url_that_connects():
    with PostgresServer() as server:
        url = server.create_database("scheduling")

        assert url.endswith("/scheduling")
        assert server.psql("SELECT current_database()", database="scheduling") == ["scheduling"]


@pytest.mark.parametrize(
    "server_class",
    [
        pytest.param(PostgresServer, marks=needs_postgres, id="postgres"),
        pytest.param(RedisServer, marks=needs_redis, id="redis"),
    ],
)
def test_a_server_refuses_a_port_in_use_and_leaves_the_other_one_running(server_class):
    with server_class() as first:
        second = server_class(port=first.port)
        try:
            with pytest.raises(ServerError, match="exited"):
                second.start()
        finally:
            second.close()
        assert first.running
        assert first._ready()


@needs_redis
def test_redis_server_answers_ping_and_stops():
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.ping()
    assert not server.ping()


@needs_postgres
def test_command_line_runs_the_command_with_database_url_and_returns_its_status():
    script = (
        "import os, sys; url = os.environ['DATABASE_URL'];"
        " print(url); sys.exit(3 if url.startswith('postgres://postgres@127.0.0.1:') else 1)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "tests.servers", "postgres", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 3, result.stdout + result.stderr
    url = result.stdout.strip().splitlines()[-1]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    # The server is gone once the command has ended.
    probe = subprocess.run(
        [
            str(postgres_bin_dir() / "pg_isready"),
            "--host=127.0.0.1",
            f"--port={port}",
            "--timeout=1",
        ],
        capture_output=True,
        timeout=30,
    )
    assert probe.returncode != 0


def test_command_line_without_a_command_prints_usage():
    result = subprocess.run(
        [sys.executable, "-m", "tests.servers", "postgres"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "usage:" in result.stderr
