from __future__ import annotations

import pytest

from tests.ci import fail_a_skip, under_ci


@pytest.fixture
def tenant(db):
    from tests.factories import make_tenant

    return make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")


@pytest.fixture
def scratch_database(tmp_path):
    """A new, empty database for the processes a test starts: its NAME for SCHEDULING_DB_PATH.

    A file on SQLite; on PostgreSQL a database on the test server, dropped afterwards.
    """
    from tests.servers import scratch_database

    with scratch_database(tmp_path) as name:
        yield name


def pytest_collection_modifyitems(config, items):
    """Run the scale-out tests (tests/scale) first.

    They take minutes, mostly waiting on their servers and processes; first, they overlap the
    many quick tests on the other xdist worker instead of leaving it idle at the end. The sort
    is stable, so every xdist worker collects the same order.
    """
    items.sort(key=lambda item: "scale" not in item.nodeid.split("/")[:2])


# -- under CI=true a skip is a failure (tests/ci.py) ----------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        fail_a_skip(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if under_ci() and report.skipped:
        fail_a_skip(report)
