"""Production settings: the demo's, failing closed. ``deploy/`` runs these.

Read from the environment (the demo's names):

- ``DJANGO_SECRET_KEY`` (required; also the job-signing key unless
  ``SCHEDULING_JOB_SIGNING_KEY`` is set): missing, empty or one this repository publishes,
  the process refuses to start.
- ``DJANGO_DEBUG`` (default off), ``DJANGO_ALLOWED_HOSTS`` (default none: every request is
  refused until it is set), ``DJANGO_CSRF_TRUSTED_ORIGINS``.
- HTTPS: secure cookies always; ``DJANGO_SECURE_SSL_REDIRECT`` (default on; ``/healthz`` and
  ``/metrics`` are exempt for plain-HTTP probes), ``DJANGO_SECURE_HSTS_SECONDS`` (default
  3600: raise it once HTTPS works everywhere), ``DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS``
  (default on), ``DJANGO_SECURE_HSTS_PRELOAD`` (default off), and
  ``DJANGO_SECURE_PROXY_SSL_HEADER=1`` behind a TLS proxy that sets ``X-Forwarded-Proto``
  (and drops the client's): only then does Django trust that header.
- ``SCHEDULING_SCAN_ALLOW_NETWORKS`` (comma-separated CIDRs; default none: scans reach only
  globally routable addresses) and ``SCHEDULING_MIN_INTERVAL`` (default: the app's, 60 s).
- ``SCHEDULING_MONITORING_TOKEN`` and ``SCHEDULING_MONITORING_ALLOW_NETWORKS`` (CIDRs) restrict
  ``/healthz`` and ``/metrics``.
- E-mail (alert notifications): SMTP (the demo prints mails to the console) through
  ``DJANGO_EMAIL_HOST`` (default localhost), ``DJANGO_EMAIL_PORT`` (25),
  ``DJANGO_EMAIL_HOST_USER``, ``DJANGO_EMAIL_HOST_PASSWORD``, ``DJANGO_EMAIL_USE_TLS`` and
  ``DJANGO_DEFAULT_FROM_EMAIL``; ``DJANGO_EMAIL_BACKEND`` names another backend.
- Everything else as the demo: ``DATABASE_URL``, ``SCHEDULING_EXECUTOR``,
  ``CELERY_BROKER_URL``, ...
"""

from __future__ import annotations

import os

import django
from django.core.exceptions import ImproperlyConfigured

from project.settings import *  # noqa: F403

# Keys this repository publishes (the demo settings' default, the deployment examples'
# placeholders); scheduling.checks.PUBLIC_SIGNING_KEYS warns about the same in any project.
_PUBLISHED_KEYS = frozenset(
    {
        "demo-only-secret-key-change-me-in-production",
        "compose-only-secret-change-me",
        "change-me-to-a-long-random-string",
    }
)


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in {"1", "true", "yes"}


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _key(name: str, *, required: bool) -> str:
    value = os.environ.get(name, "").strip()
    if (required and not value) or value in _PUBLISHED_KEYS:
        problem = "is not set" if not value else "is a published example"
        raise ImproperlyConfigured(
            f"{name} {problem}: set it to a long random string, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    return value


SECRET_KEY = _key("DJANGO_SECRET_KEY", required=True)
# Job state is unpickled once its signature verifies: its key is as sensitive as SECRET_KEY.
SCHEDULING_JOB_SIGNING_KEY = _key("SCHEDULING_JOB_SIGNING_KEY", required=False) or None

DEBUG = _flag("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS")

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_SSL_REDIRECT = _flag("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "3600"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _flag("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = _flag("DJANGO_SECURE_HSTS_PRELOAD", default=False)
if _flag("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# /healthz and /metrics: a bearer token and/or the networks of the probes and Prometheus.
if os.environ.get("SCHEDULING_MONITORING_TOKEN"):
    SCHEDULING_MONITORING_TOKEN = os.environ["SCHEDULING_MONITORING_TOKEN"]
SCHEDULING_MONITORING_ALLOW_NETWORKS = _list("SCHEDULING_MONITORING_ALLOW_NETWORKS")

# The demo scans this machine; production reaches only what the operator allows.
SCHEDULING_SCAN_ALLOW_NETWORKS = _list("SCHEDULING_SCAN_ALLOW_NETWORKS")
# The demo's 1 s minimum goes: the app's default applies unless the environment sets one.
if os.environ.get("SCHEDULING_MIN_INTERVAL"):
    SCHEDULING_MIN_INTERVAL = int(os.environ["SCHEDULING_MIN_INTERVAL"])
else:
    del SCHEDULING_MIN_INTERVAL

# E-mail: SMTP unless DJANGO_EMAIL_BACKEND names another backend (the demo's is the console).
_EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"
)
_SMTP = {
    "host": os.environ.get("DJANGO_EMAIL_HOST", "localhost"),
    "port": int(os.environ.get("DJANGO_EMAIL_PORT", "25")),
    "username": os.environ.get("DJANGO_EMAIL_HOST_USER", ""),
    "password": os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", ""),
    "use_tls": _flag("DJANGO_EMAIL_USE_TLS", default=False),
}
if os.environ.get("DJANGO_DEFAULT_FROM_EMAIL"):
    DEFAULT_FROM_EMAIL = os.environ["DJANGO_DEFAULT_FROM_EMAIL"]
if django.VERSION >= (6, 1):
    _smtp_backend = _EMAIL_BACKEND.endswith("smtp.EmailBackend")
    MAILERS = {"default": {"BACKEND": _EMAIL_BACKEND, "OPTIONS": _SMTP if _smtp_backend else {}}}
else:
    EMAIL_BACKEND = _EMAIL_BACKEND
    EMAIL_HOST, EMAIL_PORT = _SMTP["host"], _SMTP["port"]
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _SMTP["username"], _SMTP["password"]
    EMAIL_USE_TLS = _SMTP["use_tls"]
