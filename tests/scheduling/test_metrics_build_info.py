"""``scheduling_build_info`` on /metrics: which version of this package and of Django answers."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import django
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from scheduling.monitoring import DISTRIBUTION, distribution_version

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def build_info(families) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in families
        for sample in family.samples
        if sample.name == "scheduling_build_info"
    ]


def test_the_build_info_names_the_installed_version_and_djangos(client):
    body = client.get("/metrics").content.decode()
    assert build_info(text_string_to_metric_families(body)) == [
        (
            {"version": importlib.metadata.version(DISTRIBUTION), "django": django.get_version()},
            1.0,
        )
    ]


def test_the_build_info_is_valid_openmetrics_too(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    [(labels, value)] = build_info(openmetrics_families(response.content.decode()))
    assert (labels["django"], value) == (django.get_version(), 1.0)


def test_the_version_is_read_from_this_projects_distribution():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    # The test environment installs this checkout (pip install -e ".[test]").
    assert distribution_version() == importlib.metadata.version(project["name"]) != "unknown"


def test_a_distribution_that_is_not_installed_reads_unknown():
    assert distribution_version("django-tenant-scheduling-not-installed") == "unknown"
