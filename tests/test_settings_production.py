"""The production settings fail closed, and the deployment files run them."""

from __future__ import annotations

import json
import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "project" / "settings_production.py"
DEPLOY = ROOT / "deploy"
DEMO_KEY = "demo-only-secret-key-change-me-in-production"

# Variables that production settings read: unset for each test unless it sets them.
READ = [
    "DJANGO_SECRET_KEY",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SECURE_HSTS_SECONDS",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_SECURE_HSTS_PRELOAD",
    "DJANGO_SECURE_PROXY_SSL_HEADER",
    "SCHEDULING_JOB_SIGNING_KEY",
    "SCHEDULING_SCAN_ALLOW_NETWORKS",
    "SCHEDULING_MIN_INTERVAL",
    "SCHEDULING_MONITORING_TOKEN",
    "SCHEDULING_MONITORING_ALLOW_NETWORKS",
]


def random_key() -> str:
    return secrets.token_urlsafe(50)


def production_settings(monkeypatch, **environ: str) -> dict:
    for name in READ:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    # Run the file afresh: the settings are read from the environment at import time.
    return runpy.run_path(str(SETTINGS))


def run_python(code: str, tmp_path: Path, **environ: str) -> subprocess.CompletedProcess:
    """Run ``code`` with a clean environment: only what the test gives (and a throwaway DB)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "project.settings_production",
        "SCHEDULING_DB_PATH": str(tmp_path / "db.sqlite3"),
        **environ,
    }
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_secret_key_the_settings_refuse_to_load_with_one_clear_line(tmp_path):
    result = run_python("import django; django.setup()", tmp_path)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is not")
    assert "secrets.token_urlsafe" in last


@pytest.mark.parametrize(
    "key",
    ["", "   ", DEMO_KEY, "change-me-to-a-long-random-string", "compose-only-secret-change-me"],
)
def test_an_empty_or_published_secret_key_is_refused(monkeypatch, key):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        production_settings(monkeypatch, DJANGO_SECRET_KEY=key)


def test_a_published_job_signing_key_is_refused(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="SCHEDULING_JOB_SIGNING_KEY"):
        production_settings(
            monkeypatch, DJANGO_SECRET_KEY=random_key(), SCHEDULING_JOB_SIGNING_KEY=DEMO_KEY
        )


def test_the_published_keys_are_those_the_deploy_check_knows(monkeypatch):
    from scheduling.checks import PUBLIC_SIGNING_KEYS

    namespace = production_settings(monkeypatch, DJANGO_SECRET_KEY=random_key())
    assert namespace["_PUBLISHED_KEYS"] == PUBLIC_SIGNING_KEYS
    assert f'"{DEMO_KEY}"' in (ROOT / "project" / "settings.py").read_text()


def test_defaults_are_closed(monkeypatch):
    key = random_key()
    namespace = production_settings(monkeypatch, DJANGO_SECRET_KEY=key)

    assert namespace["SECRET_KEY"] == key
    assert namespace["SCHEDULING_JOB_SIGNING_KEY"] is None  # derived from SECRET_KEY
    assert namespace["DEBUG"] is False
    assert namespace["ALLOWED_HOSTS"] == []
    assert namespace["SCHEDULING_SCAN_ALLOW_NETWORKS"] == []
    assert "SCHEDULING_MIN_INTERVAL" not in namespace  # the app's default
    assert namespace["SESSION_COOKIE_SECURE"] is namespace["CSRF_COOKIE_SECURE"] is True
    assert namespace["SECURE_SSL_REDIRECT"] is True
    assert namespace["SECURE_HSTS_SECONDS"] > 0
    # The forwarded-protocol header is trusted only when asked for.
    assert "SECURE_PROXY_SSL_HEADER" not in namespace


def test_the_environment_opens_what_it_names(monkeypatch):
    namespace = production_settings(
        monkeypatch,
        DJANGO_SECRET_KEY=random_key(),
        DJANGO_DEBUG="1",
        DJANGO_ALLOWED_HOSTS="scheduling.example.com, admin.example.com",
        DJANGO_SECURE_PROXY_SSL_HEADER="1",
        DJANGO_SECURE_SSL_REDIRECT="0",
        SCHEDULING_SCAN_ALLOW_NETWORKS="10.0.0.0/8",
        SCHEDULING_MIN_INTERVAL="30",
        SCHEDULING_JOB_SIGNING_KEY="k" * 10 + random_key(),
    )
    assert namespace["DEBUG"] is True
    assert namespace["ALLOWED_HOSTS"] == ["scheduling.example.com", "admin.example.com"]
    assert namespace["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert namespace["SECURE_SSL_REDIRECT"] is False
    assert namespace["SCHEDULING_SCAN_ALLOW_NETWORKS"] == ["10.0.0.0/8"]
    assert namespace["SCHEDULING_MIN_INTERVAL"] == 30
    assert namespace["SCHEDULING_JOB_SIGNING_KEY"].startswith("k" * 10)


def test_the_app_sees_the_closed_defaults(tmp_path):
    code = (
        "import django, json; django.setup()\n"
        "from django.conf import settings\n"
        "from scheduling.conf import conf\n"
        "print(json.dumps([settings.DEBUG, conf.SCAN_ALLOW_NETWORKS, conf.MIN_INTERVAL]))"
    )
    result = run_python(code, tmp_path, DJANGO_SECRET_KEY=random_key())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [False, [], 60]


def test_alert_mails_go_out_by_smtp(tmp_path):
    code = (
        "import django; django.setup()\n"
        "from django.core import mail\n"
        "from django.core.mail.backends.smtp import EmailBackend\n"
        "connection = mail.get_connection()\n"
        "print(isinstance(connection, EmailBackend), connection.host, connection.port)"
    )
    result = run_python(
        code,
        tmp_path,
        DJANGO_SECRET_KEY=random_key(),
        DJANGO_EMAIL_HOST="mail.example.com",
        DJANGO_EMAIL_PORT="587",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "mail.example.com", "587"]


def check_deploy_ids(tmp_path: Path, *, errors: bool = False, **environ: str) -> set[str]:
    """The ids ``check --deploy`` reports; with ``errors``, errors may end it (exit 1)."""
    code = (
        "import sys; from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(['manage.py', 'check', '--deploy'])"
    )
    result = run_python(code, tmp_path, **environ)
    assert result.returncode in ((0, 1) if errors else (0,)), result.stderr
    return set(re.findall(r"\((\w+\.[EW]\d+)\)", result.stderr + result.stdout))


def test_check_deploy_has_none_of_the_demos_warnings(tmp_path):
    # The demo prints mails to the console: an error of check --deploy on Django 6.1.
    demo = check_deploy_ids(tmp_path, errors=True, DJANGO_SETTINGS_MODULE="project.settings")
    production = check_deploy_ids(
        tmp_path,
        DJANGO_SECRET_KEY=random_key(),
        DJANGO_ALLOWED_HOSTS="scheduling.example.com",
        SCHEDULING_MONITORING_TOKEN=random_key(),
    )
    ours_and_djangos = {i for i in production if i.startswith(("security.", "scheduling."))}
    # What remains: no scheduler has run against this throwaway database (W003: not even
    # migrated), and HSTS preload, a commitment to browsers' lists that the operator opts
    # into (DJANGO_SECURE_HSTS_PRELOAD=1).
    assert ours_and_djangos == {"scheduling.W003", "security.W021"}
    assert {"scheduling.W008", "security.W009", "security.W018"} <= demo


def read_env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_deployment_files_run_the_production_settings():
    example = read_env_file(DEPLOY / "scheduling.env.example")
    assert example["DJANGO_SETTINGS_MODULE"] == "project.settings_production"
    assert example["DJANGO_SECRET_KEY"] == ""  # refuses to start until it is filled in

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    environments = [compose["x-app"]["environment"]] + [
        service["environment"]
        for service in compose["services"].values()
        if "build" in service or "<<" in service
    ]
    for environment in environments:
        assert environment["DJANGO_SETTINGS_MODULE"] == "project.settings_production"
        # Taken from the shell that runs compose; compose stops without it.
        assert environment["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")

    for unit in (DEPLOY / "systemd").glob("*.service"):
        assert "Environment=DJANGO_SETTINGS_MODULE=project.settings_production" in (
            unit.read_text()
        ), unit.name
    assert "DJANGO_SETTINGS_MODULE=project.settings_production" in (
        (DEPLOY / "Dockerfile").read_text()
    )
    assert "project.settings_production" in (ROOT / "docs" / "deployment.md").read_text()
