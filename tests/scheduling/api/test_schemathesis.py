"""Property-based runs of the API against its own schema, over HTTP on the live test server.

Schemathesis generates requests for every operation from the OpenAPI document, as the owner
of one tenant with data, while another tenant's rows sit beside it. No response may be a 5xx,
carry a status code the schema does not list, or have a body or content type that
contradicts the schema. Two runs:

- fuzzing: random requests (25 per operation), half of them steered onto existing ids, the
  user's tenant and registered keys so that they get past a 404 and change real rows;
- coverage: schemathesis' deterministic boundary and malformed cases (huge ids, wrong types,
  missing fields, invalid JSON, unsupported methods) for one schedule kind and the shared
  endpoints (the three kinds share their code).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from scheduling.api.docs import build_schema
from tests.factories import make_membership, make_token, make_user
from tests.scheduling.api.conftest import CLEANUP_TARGET, REPORT_TYPE, build_world, tenant_state

pytestmark = pytest.mark.fuzz

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# Loaded at collection (pytest-django has configured Django by then): the same document that
# /api/schema/ serves. Schemathesis' lazy ``from_fixture`` loader does not work on pytest 9.
schema = schemathesis.openapi.from_dict(build_schema())


@pytest.fixture
def api_token(api_task_types):
    """The token of tenant A's owner; afterwards, tenant B's rows must be as they were."""
    world = build_world("A")
    other = build_world("B")
    user = make_user(username="fuzzer")
    make_membership(user=user, tenant=world.tenant, role="owner")
    before = tenant_state(other.tenant)
    yield make_token(user=user)
    assert tenant_state(other.tenant) == before


# With sequences reset, the small ids are those of tenant A's rows, then tenant B's, then of
# nothing. Random ids alone would almost never hit a row.
KNOWN_IDS = st.integers(min_value=1, max_value=10)
KNOWN_VALUES = {
    "tenant": st.sampled_from(["tenant-a", 1, "tenant-b", 2]),
    "depends_on": st.lists(KNOWN_IDS, max_size=3),
    "scan_type": st.sampled_from(["test_echo", "test_sleep"]),
    "report_type": st.just(REPORT_TYPE),
    "cleanup_target": st.just(CLEANUP_TARGET),
    "timezone": st.sampled_from(["", "UTC", "Europe/Berlin", "America/New_York"]),
    "interval_seconds": st.integers(min_value=1, max_value=86_400),
    "cron_expression": st.sampled_from(["*/5 * * * *", "@daily", "0 9 * * 1-5"]),
    "calendar_unit": st.sampled_from(["day", "week", "month"]),
    "calendar_time": st.sampled_from(["09:30", "02:30:00", "0:00", "23:59:59"]),
    "calendar_weekdays": st.sampled_from(["", "mon,thu", ["fri", "mon"], "sun"]),
    "options": st.just({}),
}


# What a create needs beyond the schema's own constraints to pass the model layer.
CREATE_KEYS = {
    "/api/scans/": ("scan_type", "target"),
    "/api/reports/": ("report_type",),
    "/api/cleanups/": ("cleanup_target",),
}


def steer(case, data) -> None:
    """Sometimes swap generated ids and keys for existing ones, so requests reach real rows."""
    if "id" in (case.path_parameters or {}) and data.draw(st.booleans(), label="known id"):
        case.path_parameters["id"] = data.draw(KNOWN_IDS, label="id")
    if not isinstance(case.body, dict) or not data.draw(st.booleans(), label="known values"):
        return
    if case.method == "POST" and case.path in CREATE_KEYS:
        case.body.setdefault("trigger_type", "interval")
        case.body.setdefault("interval_seconds", 60)
        case.body.setdefault("tenant", "tenant-a")
        for key in CREATE_KEYS[case.path]:
            case.body.setdefault(key, "x")
    for key, strategy in KNOWN_VALUES.items():
        if key in case.body:
            case.body[key] = data.draw(strategy, label=key)


@pytest.mark.django_db(transaction=True, reset_sequences=True)
@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # Random locally (to keep finding new cases), the same examples in CI (no flaky runs).
    derandomize=bool(os.environ.get("CI")),
    print_blob=True,
)
def test_the_api_honours_its_schema_for_generated_requests(case, data, live_server, api_token):
    steer(case, data)
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Token {api_token}"},
        checks=CHECKS,
        timeout=10,
    )


coverage_schema = schema.exclude(path_regex=r"^/api/(reports|cleanups)/")


@pytest.mark.django_db(transaction=True, reset_sequences=True)
@coverage_schema.parametrize()
@settings(phases=[Phase.explicit], deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_honours_its_schema_for_boundary_and_malformed_requests(
    case, live_server, api_token
):
    case.call_and_validate(
        base_url=live_server.url,
        headers={"Authorization": f"Token {api_token}"},
        checks=CHECKS,
        timeout=10,
    )
