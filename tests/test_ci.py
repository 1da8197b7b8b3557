"""Under CI=true a skip fails the run, except a test of another run of the test command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFTEST = "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
TESTS = """
import pytest
from tests.ci import OTHER_RUN

def test_needs_a_server():
    pytest.skip("PostgreSQL is not installed")

@pytest.mark.skipif(True, reason=OTHER_RUN + "runs on PostgreSQL")
def test_of_the_other_run():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    assert False

def test_passes():
    pass
"""
MODULE_SKIP = """
import pytest
pytest.importorskip("a_module_that_is_not_installed")
"""


def run(tmp_path: Path, ci: bool, module: str = TESTS) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_things.py").write_text(module)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true" if ci else ""}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_under_ci_a_missing_component_fails_the_run(tmp_path):
    result = run(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("1 failed, 1 passed, 1 skipped, 1 xfailed"), summary
    assert "skipped under CI=true" in result.stdout
    assert "PostgreSQL is not installed" in result.stdout


def test_under_ci_a_module_that_cannot_be_imported_is_an_error(tmp_path):
    result = run(tmp_path, ci=True, module=MODULE_SKIP)
    assert result.returncode == 2, result.stdout  # a collection error stops the run
    assert "skipped under CI=true" in result.stdout
    assert "a_module_that_is_not_installed" in result.stdout


def test_elsewhere_a_skip_stays_a_skip(tmp_path):
    result = run(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("1 passed, 2 skipped, 1 xfailed")
    result = run(tmp_path, ci=False, module=MODULE_SKIP)
    assert result.returncode == 5, result.stdout  # nothing ran: pytest's "no tests collected"
    assert result.stdout.strip().splitlines()[-1].startswith("1 skipped")
