"""The demo project's database settings: SQLite by default, DATABASE_URL selects another."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SETTINGS = Path(__file__).resolve().parents[1] / "project" / "settings.py"


def project_settings(monkeypatch, **environ: str) -> dict:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SCHEDULING_DB_PATH", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    # Run the file afresh: the settings are read from the environment at import time.
    return runpy.run_path(str(SETTINGS))


def test_sqlite_in_wal_mode_is_the_default(monkeypatch):
    database = project_settings(monkeypatch)["DATABASES"]["default"]

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"].endswith("db.sqlite3")
    assert "journal_mode=WAL" in database["OPTIONS"]["init_command"]
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_database_url_selects_postgresql(monkeypatch):
    database = project_settings(
        monkeypatch, DATABASE_URL="postgres://scheduler:s3cret@db.internal:5433/scheduling"
    )["DATABASES"]["default"]

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == (
        "scheduling",
        "scheduler",
        "s3cret",
    )
    assert (database["HOST"], database["PORT"]) == ("db.internal", 5433)
    # Connections the server dropped are replaced instead of failing the next query.
    assert database["CONN_HEALTH_CHECKS"] is True
    # No SQLite-only option reaches the PostgreSQL backend.
    assert "transaction_mode" not in database.get("OPTIONS", {})


def test_a_sqlite_database_url_keeps_the_wal_options(monkeypatch, tmp_path):
    database = project_settings(monkeypatch, DATABASE_URL=f"sqlite:///{tmp_path}/other.sqlite3")[
        "DATABASES"
    ]["default"]

    assert database["NAME"] == f"{tmp_path}/other.sqlite3"
    assert database["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_an_unknown_database_url_scheme_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="mongodb"):
        project_settings(monkeypatch, DATABASE_URL="mongodb://127.0.0.1/scheduling")
