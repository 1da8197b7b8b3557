"""Abuse limits of the API (issue 17): one queued run, size caps as 400s, rate limits as 429s."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import override_settings

from scheduling.checks import check_settings
from scheduling.conf import conf
from scheduling.models import AuditEntry, Execution
from scheduling.validators import OPTIONS_MAX_BYTES

from .conftest import valid_payload

pytestmark = pytest.mark.django_db

LOW_RATES = {"scheduling": "20/minute", "scheduling_run": "3/minute"}


@pytest.fixture
def empty_cache():
    cache.clear()
    yield
    cache.clear()


def run_url(world, kind="tasks"):
    return f"/api/{kind}/{world.schedule(kind).pk}/run/"


def test_run_answers_202_for_a_new_run_and_200_with_the_queued_one_after(world_a):
    client = world_a.client("operator")
    first = client.post(run_url(world_a), {}, format="json")
    assert first.status_code == 202, first.content
    for _ in range(5):
        again = client.post(run_url(world_a), {}, format="json")
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
    assert Execution.objects.filter(schedule=world_a.task, trigger="manual").count() == 1


def test_run_with_other_options_queues_another(world_a):
    client = world_a.client("operator")
    plain = client.post(run_url(world_a), {}, format="json")
    other = client.post(run_url(world_a), {"options": {"a": 7}}, format="json")
    same = client.post(run_url(world_a), {"options": {"a": 7}}, format="json")
    assert (plain.status_code, other.status_code, same.status_code) == (202, 202, 200)
    assert other.json()["id"] != plain.json()["id"]
    assert same.json()["id"] == other.json()["id"]


def test_run_answers_409_past_ten_queued_manual_runs(world_a):
    client = world_a.client("operator")
    for a in range(10):
        assert (
            client.post(run_url(world_a), {"options": {"a": a}}, format="json").status_code == 202
        )
    response = client.post(run_url(world_a), {"options": {"a": 10}}, format="json")
    assert response.status_code == 409
    assert "queued already" in response.json()["detail"]


def test_run_options_past_the_size_limit_answer_400(world_a):
    body = {"options": {"a": 1, "b": "x" * OPTIONS_MAX_BYTES}}
    response = world_a.client("operator").post(run_url(world_a), body, format="json")
    assert response.status_code == 400
    assert "at most 16384 bytes" in response.json()["options"][0]
    assert not Execution.objects.filter(schedule=world_a.task, trigger="manual").exists()


def test_create_answers_400_with_every_capped_field(world_a):
    payload = valid_payload(
        "reports",
        world_a.tenant,
        description="d" * 2001,
        recipients="\n".join(f"r{n}@example.com" for n in range(51)),
        options={"big": "x" * OPTIONS_MAX_BYTES},
    )
    response = world_a.client("admin").post("/api/reports/", payload, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert errors["description"] == ["Ensure this value has at most 2000 characters (it has 2001)."]
    assert errors["recipients"] == ["A report may have at most 50 recipients (this has 51)."]
    assert "at most 16384 bytes" in errors["options"][0]


@override_settings(SCHEDULING_API_THROTTLE_RATES=LOW_RATES)
def test_runs_past_the_run_rate_answer_429_with_retry_after(world_a, empty_cache):
    client = world_a.client("operator")
    statuses = [client.post(run_url(world_a), {}, format="json").status_code for _ in range(3)]
    assert statuses == [202, 200, 200]
    response = client.post(run_url(world_a), {}, format="json")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    # Pause, resume, cancel and retry count in the same scope; reads do not.
    assert client.post(f"/api/tasks/{world_a.task.pk}/resume/").status_code == 429
    assert client.get(f"/api/tasks/{world_a.task.pk}/").status_code == 200
    # Another user has their own budget.
    other = world_a.client("admin").post(run_url(world_a), {}, format="json")
    assert other.status_code == 200


@override_settings(SCHEDULING_API_THROTTLE_RATES=LOW_RATES)
def test_reads_past_the_general_rate_answer_429(world_a, empty_cache):
    client = world_a.client("viewer")
    statuses = [client.get("/api/tasks/").status_code for _ in range(21)]
    assert statuses == [200] * 20 + [429]


def test_throttle_rates_are_read_at_request_time(world_a, empty_cache, settings):
    client = world_a.client("viewer")
    settings.SCHEDULING_API_THROTTLE_RATES = {"scheduling": "1/minute"}
    assert client.get("/api/tasks/").status_code == 200
    assert client.get("/api/tasks/").status_code == 429
    settings.SCHEDULING_API_THROTTLE_RATES = {"scheduling": None}
    assert client.get("/api/tasks/").status_code == 200


def test_throttle_rates_default_and_merge(settings):
    del settings.SCHEDULING_API_THROTTLE_RATES
    assert conf.API_THROTTLE_RATES == {"scheduling": "600/minute", "scheduling_run": "60/minute"}
    settings.SCHEDULING_API_THROTTLE_RATES = {"scheduling_run": "5/second"}
    assert conf.API_THROTTLE_RATES == {"scheduling": "600/minute", "scheduling_run": "5/second"}


@pytest.mark.parametrize(
    "value", ["60/minute", ["60/minute"], {"scheduling": "sixty"}, {"scheduling": 60}]
)
def test_check_reports_bad_throttle_rates(settings, value):
    settings.SCHEDULING_API_THROTTLE_RATES = value
    assert [e.id for e in check_settings()] == ["scheduling.E046"]


def test_check_accepts_good_throttle_rates(settings):
    settings.SCHEDULING_API_THROTTLE_RATES = {"scheduling": "10/s", "scheduling_run": None}
    assert not [e for e in check_settings() if e.id == "scheduling.E046"]
    call_command("check")


def test_a_returned_run_is_not_audited_again(world_a):
    client = world_a.client("operator")
    for _ in range(3):
        client.post(run_url(world_a), {}, format="json")
    assert AuditEntry.objects.filter(schedule=world_a.task, action="run").count() == 1
