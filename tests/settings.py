"""Test settings: the demo project's, plus a test app that registers test task types."""

import tempfile

from project.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SCHEDULING_MIN_INTERVAL = 1
LOGGING = {"version": 1, "disable_existing_loggers": False}
# Most tests count a tenant's schedules from zero; the tests of the built-in "History
# retention" cleanup turn it on with override_settings.
SCHEDULING_RETENTION_SCHEDULE = False
# Tests make many API requests per user id (ids repeat across tests, the cache does not
# reset): no rate limits, except in the tests of the limits (tests/scheduling/api/test_limits.py).
SCHEDULING_API_THROTTLE_RATES = {"scheduling": None, "scheduling_run": None}

_database = DATABASES["default"]  # noqa: F405

if _database["ENGINE"] == "django.db.backends.sqlite3":
    # Tests that make the database unavailable shorten SQLite's busy timeout for the scheduler.
    _database["OPTIONS"]["timeout"] = float(
        os.environ.get("SCHEDULING_SQLITE_TIMEOUT", "20")  # noqa: F405
    )
    # A file, not memory: tests that start real scheduler processes share this database with
    # them.
    _database["TEST"] = {
        "NAME": os.environ.get("SCHEDULING_TEST_DB_PATH")  # noqa: F405
        or os.path.join(tempfile.gettempdir(), f"scheduling-test-{os.getpid()}.sqlite3")  # noqa: F405
    }

if os.environ.get("SCHEDULING_DB_PATH"):  # noqa: F405
    # The processes a test starts get the test database's NAME here: the file's path on
    # SQLite, the test_<name> database that the run created on PostgreSQL (DATABASE_URL).
    _database["NAME"] = os.environ["SCHEDULING_DB_PATH"]  # noqa: F405
