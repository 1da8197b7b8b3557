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

# Tests that make the database unavailable shorten SQLite's busy timeout for the scheduler.
DATABASES["default"]["OPTIONS"]["timeout"] = float(  # noqa: F405
    os.environ.get("SCHEDULING_SQLITE_TIMEOUT", "20")  # noqa: F405
)

# A file, not memory: tests that start real scheduler processes share this database with them.
DATABASES["default"]["TEST"] = {  # noqa: F405
    "NAME": os.environ.get("SCHEDULING_TEST_DB_PATH")  # noqa: F405
    or os.path.join(tempfile.gettempdir(), f"scheduling-test-{os.getpid()}.sqlite3")  # noqa: F405
}
