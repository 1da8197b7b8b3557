"""Alert rules: failing and did-not-run alerts by e-mail and webhook, cool-down and recovery.

Outcomes are recorded the way ``runner.finish`` records them (the schedule's counters updated
in the database), then handed to ``alerts.on_execution_finished``. Webhooks go to a real
loopback HTTP server; e-mail to Django's locmem outbox.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import django
import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import OperationalError
from django.db.models import F
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from scheduling import alerts, runner
from scheduling.models import (
    AlertDelivery,
    AlertRule,
    AlertState,
    Execution,
    Schedule,
    Status,
    TriggerKind,
)
from tests.factories import (
    make_alert_rule,
    make_execution,
    make_membership,
    make_scan,
    make_tenant,
    make_user,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
_occurrence = itertools.count(1)


def occurrence() -> datetime:
    """Return a distinct scheduled_for: the clock is frozen in most of these tests."""
    return timezone.now() - timedelta(milliseconds=next(_occurrence))


class WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(
            {"path": self.path, "content_type": self.headers["Content-Type"], "body": body}
        )
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # keep the test output clean
        pass


@contextmanager
def serve(status: int = 204):
    server = ThreadingHTTPServer(("127.0.0.1", 0), WebhookHandler)
    server.received = []
    server.status = status
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def webhook_server():
    with serve() as server:
        yield server


def hook_url(server, path: str = "/hook?token=s3cret") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def payloads(server) -> list[dict]:
    return [json.loads(request["body"]) for request in server.received]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def admins(tenant):
    """Owner and admin with addresses, plus members and users who must not be e-mailed."""
    make_membership(user=make_user(email="owner@acme.test"), tenant=tenant, role="owner")
    make_membership(user=make_user(email="admin@acme.test"), tenant=tenant, role="admin")
    make_membership(user=make_user(email="op@acme.test"), tenant=tenant, role="operator")
    make_membership(user=make_user(email=""), tenant=tenant, role="admin")
    make_membership(
        user=make_user(email="gone@acme.test", is_active=False), tenant=tenant, role="owner"
    )
    other = make_tenant(name="Other")
    make_membership(user=make_user(email="admin@other.test"), tenant=other, role="admin")
    return ["admin@acme.test", "owner@acme.test"]


def fail(schedule: Schedule, error: str = "Connection refused") -> list[AlertDelivery]:
    """Record a failed occurrence as the runner does, then apply the alert rules."""
    execution = make_execution(
        schedule=schedule, status=Status.FAILED, error=error, scheduled_for=occurrence()
    )
    Schedule.objects.filter(pk=schedule.pk).update(
        consecutive_failures=F("consecutive_failures") + 1, last_status=Status.FAILED
    )
    return alerts.on_execution_finished(execution)


def succeed(schedule: Schedule) -> list[AlertDelivery]:
    """Record a succeeded occurrence as the runner does, then apply the alert rules."""
    execution = make_execution(
        schedule=schedule, status=Status.SUCCEEDED, scheduled_for=occurrence()
    )
    Schedule.objects.filter(pk=schedule.pk).update(
        consecutive_failures=0, last_status=Status.SUCCEEDED
    )
    return alerts.on_execution_finished(execution)


def events(deliveries: list[AlertDelivery]) -> list[tuple[str, str, bool]]:
    return [(d.event, d.channel, d.ok) for d in deliveries]


# -- failing and recovered by e-mail -----------------------------------------------------------


def test_email_goes_to_owners_and_admins_once_per_cooldown_and_once_on_recovery(
    tenant, admins, mailoutbox
):
    scan = make_scan(tenant=tenant, name="Shop health")
    rule = make_alert_rule(tenant=tenant, consecutive_failures=3, cooldown_seconds=3600)
    with time_machine.travel(T0, tick=False) as traveller:
        assert fail(scan) == []
        assert fail(scan) == []
        assert mailoutbox == []

        sent = fail(scan, error="x" * 5000)
        assert events(sent) == [("failing", "email", True)]
        assert len(mailoutbox) == 1
        message = mailoutbox[0]
        assert sorted(message.to) == admins
        assert message.subject == "[Acme] Shop health failed 3 times in a row"
        assert "Consecutive failures: 3" in message.body
        assert "x" * 999 in message.body
        assert "x" * 1001 not in message.body

        # Still failing inside the cool-down: nothing more.
        assert fail(scan) == []
        traveller.shift(timedelta(seconds=3599))
        assert fail(scan) == []
        assert len(mailoutbox) == 1

        # Past the cool-down a reminder goes out, with the count so far.
        traveller.shift(timedelta(seconds=2))
        assert events(fail(scan)) == [("failing", "email", True)]
        assert len(mailoutbox) == 2
        assert "6 times in a row" in mailoutbox[1].subject

        assert events(succeed(scan)) == [("recovered", "email", True)]
        assert len(mailoutbox) == 3
        assert mailoutbox[2].subject == "[Acme] Shop health recovered"
        # Recovered once: further successes say nothing.
        assert succeed(scan) == []
        assert len(mailoutbox) == 3

    rows = AlertDelivery.objects.order_by("created_at")
    assert [(d.event, d.channel, d.ok, d.rule_id, d.schedule_id) for d in rows] == [
        ("failing", "email", True, rule.pk, scan.pk),
        ("failing", "email", True, rule.pk, scan.pk),
        ("recovered", "email", True, rule.pk, scan.pk),
    ]
    assert all(d.tenant_id == tenant.pk for d in rows)
    assert rows[0].recipient == "admin@acme.test, owner@acme.test"
    assert not AlertState.objects.get(rule=rule, schedule=scan).firing


def test_failing_again_after_recovery_alerts_again(tenant, admins, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    assert events(fail(scan)) == [("failing", "email", True)]
    assert events(succeed(scan)) == [("recovered", "email", True)]
    assert events(fail(scan)) == [("failing", "email", True)]
    assert len(mailoutbox) == 3


def test_a_failure_whose_retry_is_pending_does_not_count(tenant, admins, mailoutbox):
    scan = make_scan(
        tenant=tenant,
        scan_type="test_sleep",
        options={"fail": True},
        max_retries=1,
        retry_backoff_seconds=0,
    )
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    first = runner.claim(scan, T0, claimed_by="test")

    runner.execute(first.pk)  # fails; the runner queues its retry and applies the rules

    retry = Execution.objects.get(schedule=scan, attempt=2)
    assert (retry.trigger, retry.status, retry.scheduled_for) == (
        TriggerKind.RETRY,
        Status.QUEUED,
        T0,
    )
    assert Execution.objects.get(pk=first.pk).status == Status.FAILED
    assert mailoutbox == []
    assert not AlertDelivery.objects.exists()

    runner.execute(retry.pk)  # fails too, with no retry left: now it counts

    assert Schedule.objects.get(pk=scan.pk).consecutive_failures == 1
    assert [d.event for d in AlertDelivery.objects.all()] == ["failing"]
    assert len(mailoutbox) == 1


def test_skipped_and_missed_outcomes_neither_alert_nor_recover(tenant, admins, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1, cooldown_seconds=0)
    fail(scan)
    for status in (Status.SKIPPED, Status.MISSED):
        assert alerts.on_execution_finished(make_execution(schedule=scan, status=status)) == []
    assert len(mailoutbox) == 1
    assert AlertState.objects.get(schedule=scan).firing


def test_email_without_owner_or_admin_address_is_recorded_as_not_delivered(tenant, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    make_membership(user=make_user(email="op@acme.test"), tenant=tenant, role="operator")
    [delivery] = fail(scan)
    assert (delivery.channel, delivery.ok) == ("email", False)
    assert "no owner or admin" in delivery.detail
    assert mailoutbox == []


class HostResolver:
    """A host project's resolver that names the alert recipients itself."""

    def tenant_ids(self, user, *, min_role=None):
        return set()

    def alert_recipients(self, tenant):
        return ["oncall@host.test", "", "ONCALL@host.test"]


class BrokenResolver(HostResolver):
    def alert_recipients(self, tenant):
        raise RuntimeError("directory is down")


def test_a_host_resolver_can_name_the_alert_recipients(tenant, admins, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    with override_settings(SCHEDULING_TENANT_RESOLVER="tests.scheduling.test_alerts.HostResolver"):
        fail(scan)
    assert mailoutbox[0].to == ["oncall@host.test"]


def test_failing_recipients_lookup_is_recorded_and_the_webhook_still_goes_out(
    tenant, webhook_server, mailoutbox
):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1, webhook_url=hook_url(webhook_server))
    with override_settings(
        SCHEDULING_TENANT_RESOLVER="tests.scheduling.test_alerts.BrokenResolver"
    ):
        deliveries = fail(scan)
    assert events(deliveries) == [("failing", "email", False), ("failing", "webhook", True)]
    assert "directory is down" in deliveries[0].detail
    assert len(webhook_server.received) == 1


def test_unreachable_mail_server_is_recorded_and_does_not_raise(tenant, admins):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    smtp, port = "django.core.mail.backends.smtp.EmailBackend", closed_port()
    if django.VERSION >= (6, 1):  # MAILERS replaces the EMAIL_* settings
        options = {"host": "127.0.0.1", "port": port, "timeout": 5}
        mail_settings = {"MAILERS": {"default": {"BACKEND": smtp, "OPTIONS": options}}}
    else:
        mail_settings = {
            "EMAIL_BACKEND": smtp,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": port,
            "EMAIL_TIMEOUT": 5,
        }
    with override_settings(**mail_settings):
        [delivery] = fail(scan)
    assert (delivery.event, delivery.channel, delivery.ok) == ("failing", "email", False)
    assert "ConnectionRefusedError" in delivery.detail
    assert AlertDelivery.objects.get().ok is False


# -- webhook -----------------------------------------------------------------------------------


def test_webhook_gets_json_once_per_cooldown_and_once_on_recovery(tenant, webhook_server):
    scan = make_scan(tenant=tenant, name="Shop health")
    rule = make_alert_rule(
        tenant=tenant,
        consecutive_failures=2,
        cooldown_seconds=600,
        email_admins=False,
        webhook_url=hook_url(webhook_server),
    )
    with time_machine.travel(T0, tick=False) as traveller:
        fail(scan)
        assert webhook_server.received == []
        deliveries = fail(scan, error="Connection refused")
        fail(scan)
        traveller.shift(timedelta(seconds=601))
        fail(scan)
        succeed(scan)
        succeed(scan)

    assert events(deliveries) == [("failing", "webhook", True)]
    assert [r["path"] for r in webhook_server.received] == ["/hook?token=s3cret"] * 3
    assert {r["content_type"] for r in webhook_server.received} == {"application/json"}
    first, reminder, recovered = payloads(webhook_server)
    execution_id = first.pop("execution_id")
    assert first == {
        "event": "failing",
        "tenant": {"id": tenant.pk, "name": "Acme", "slug": "acme"},
        "schedule": {"id": scan.pk, "name": "Shop health", "kind": "scan"},
        "rule": {"id": rule.pk, "name": rule.name},
        "consecutive_failures": 2,
        "last_status": "failed",
        "last_error": "Connection refused",
        "at": T0.isoformat(),
    }
    assert scan.executions.filter(pk=execution_id, status=Status.FAILED).exists()
    assert (reminder["event"], reminder["consecutive_failures"]) == ("failing", 4)
    assert (recovered["event"], recovered["consecutive_failures"]) == ("recovered", 0)
    assert (recovered["last_status"], recovered["last_error"]) == ("succeeded", "")

    rows = list(AlertDelivery.objects.order_by("created_at"))
    assert [(d.event, d.channel, d.ok, d.detail) for d in rows] == [
        ("failing", "webhook", True, "HTTP 204"),
        ("failing", "webhook", True, "HTTP 204"),
        ("recovered", "webhook", True, "HTTP 204"),
    ]
    # The recorded recipient leaves out the query string, which may hold a token.
    assert rows[0].recipient == f"http://127.0.0.1:{webhook_server.server_address[1]}/hook"


def test_email_and_webhook_both_go_out_for_one_alert(tenant, admins, webhook_server, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1, webhook_url=hook_url(webhook_server))
    assert events(fail(scan)) == [("failing", "email", True), ("failing", "webhook", True)]
    assert len(mailoutbox) == 1
    assert len(webhook_server.received) == 1


def test_webhook_error_status_is_recorded_as_not_delivered(tenant):
    scan = make_scan(tenant=tenant)
    with serve(status=500) as server:
        make_alert_rule(
            tenant=tenant, consecutive_failures=1, email_admins=False, webhook_url=hook_url(server)
        )
        [delivery] = fail(scan)
    assert (delivery.ok, delivery.detail) == (False, "HTTP 500")
    assert len(server.received) == 1


def test_webhook_to_a_closed_port_is_recorded_and_does_not_raise(tenant):
    scan = make_scan(tenant=tenant)
    make_alert_rule(
        tenant=tenant,
        consecutive_failures=1,
        email_admins=False,
        webhook_url=f"http://127.0.0.1:{closed_port()}/hook",
    )
    [delivery] = fail(scan)
    assert delivery.ok is False
    assert "ConnectionRefusedError" in delivery.detail


def test_webhook_to_the_metadata_address_is_refused_without_connecting(tenant, monkeypatch):
    connections = []

    def no_connection(*args, **kwargs):
        connections.append(args)
        raise AssertionError("the target policy should have refused before connecting")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    scan = make_scan(tenant=tenant)
    make_alert_rule(
        tenant=tenant,
        consecutive_failures=1,
        email_admins=False,
        webhook_url="http://169.254.169.254/latest/meta-data/",
    )
    [delivery] = fail(scan)
    assert connections == []
    assert (delivery.channel, delivery.ok) == ("webhook", False)
    assert "169.254.169.254" in delivery.detail
    assert "forbidden" in delivery.detail
    assert AlertDelivery.objects.get().ok is False


def test_webhook_to_loopback_is_refused_when_the_policy_denies_it(tenant, webhook_server):
    scan = make_scan(tenant=tenant)
    make_alert_rule(
        tenant=tenant,
        consecutive_failures=1,
        email_admins=False,
        webhook_url=hook_url(webhook_server, "/hook").replace("127.0.0.1", "localhost"),
    )
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        [delivery] = fail(scan)
    assert delivery.ok is False
    assert "localhost resolves to" in delivery.detail
    assert webhook_server.received == []


def test_webhook_with_an_unusable_url_is_recorded(tenant):
    scan = make_scan(tenant=tenant)
    make_alert_rule(
        tenant=tenant, consecutive_failures=1, email_admins=False, webhook_url="ftp://example/x"
    )
    [delivery] = fail(scan)
    assert delivery.ok is False
    assert "Not an http(s) URL" in delivery.detail


# -- webhook URLs checked when the rule is saved ----------------------------------------------


def rule_errors(tenant, webhook_url: str) -> list[str]:
    rule = AlertRule(
        tenant=tenant,
        name="hook",
        consecutive_failures=1,
        email_admins=False,
        webhook_url=webhook_url,
    )
    try:
        rule.full_clean()
    except ValidationError as exc:
        return exc.message_dict.get("webhook_url", [])
    return []


@pytest.mark.parametrize(
    ("webhook_url", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("https://10.0.0.5/hook", "10.0.0.5"),
        ("http://192.168.1.1:8080/hook", "192.168.1.1"),
        ("http://100.64.0.1/hook", "100.64.0.1"),
        ("http://[fd00::1]/hook", "fd00::1"),
        ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1"),
        ("http://[64:ff9b::a9fe:a9fe]/hook", "64:ff9b::a9fe:a9fe"),
        ("http://168.63.129.16/hook", "168.63.129.16"),
    ],
)
def test_a_webhook_url_to_an_internal_address_is_refused_when_the_rule_is_saved(
    tenant, webhook_url, address
):
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        [error] = rule_errors(tenant, webhook_url)
    assert f"Target address {address} is forbidden by the target policy" in error


def test_a_webhook_url_whose_name_resolves_to_loopback_is_refused_naming_the_address(tenant):
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        [error] = rule_errors(tenant, "http://localhost:8080/hook")
    assert "Target localhost resolves to" in error
    assert "127.0.0.1" in error or "::1" in error
    assert "not a public address" in error


def test_a_webhook_url_that_does_not_resolve_is_refused_when_the_rule_is_saved(tenant):
    [error] = rule_errors(tenant, "https://nonexistent.invalid/hook")
    assert error.startswith("Cannot resolve nonexistent.invalid")
    assert "must resolve when the rule is saved" in error


def test_a_webhook_url_must_be_http_or_https(tenant):
    assert rule_errors(tenant, "ftp://8.8.8.8/hook") == ["Enter an http:// or https:// URL."]


def test_a_webhook_url_to_a_public_address_or_an_allowed_network_is_accepted(tenant):
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        assert rule_errors(tenant, "https://8.8.8.8/hook") == []
        tenant.scan_allow_networks = "10.0.0.0/8"
        assert rule_errors(tenant, "https://10.0.0.5/hook") == []
        assert rule_errors(make_tenant(), "https://10.0.0.5/hook") != []


def test_a_webhook_rule_is_refused_in_the_admin_naming_the_address(tenant, client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    data = {
        "tenant": tenant.pk,
        "name": "hook",
        "enabled": "on",
        "consecutive_failures": "1",
        "webhook_url": "http://10.1.2.3/hook",
        "cooldown_seconds": "3600",
    }
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        response = client.post(reverse("admin:scheduling_alertrule_add"), data)
    assert response.status_code == 200
    assert "Target address 10.1.2.3 is forbidden" in response.content.decode()
    assert not AlertRule.objects.exists()


def test_the_tenants_allow_list_applies_to_its_webhooks_at_run_time(webhook_server):
    lab = make_tenant(scan_allow_networks="127.0.0.0/8")
    other = make_tenant()
    for tenant in (lab, other):
        make_alert_rule(
            tenant=tenant,
            consecutive_failures=1,
            email_admins=False,
            webhook_url=hook_url(webhook_server),
        )
    with override_settings(SCHEDULING_SCAN_ALLOW_NETWORKS=[]):
        [sent] = fail(make_scan(tenant=lab))
        [refused] = fail(make_scan(tenant=other))
    assert (sent.ok, sent.detail) == (True, "HTTP 204")
    assert refused.ok is False
    assert "127.0.0.1 is forbidden by the target policy" in refused.detail
    assert len(webhook_server.received) == 1


# -- scope -------------------------------------------------------------------------------------


def test_another_tenants_rules_never_fire_for_this_tenants_schedules(
    tenant, admins, webhook_server, mailoutbox
):
    scan = make_scan(tenant=tenant)
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        idle = make_scan(tenant=tenant)
    other = make_tenant(name="Other")
    make_membership(user=make_user(email="boss@other.test"), tenant=other, role="owner")
    common = {
        "consecutive_failures": 1,
        "not_succeeded_multiple": 1,
        "webhook_url": hook_url(webhook_server),
    }
    make_alert_rule(tenant=other, **common)
    # A bad row: a rule of the other tenant naming this tenant's schedule.
    make_alert_rule(tenant=other, schedule=scan, **common)
    make_alert_rule(tenant=other, schedule=idle, **common)

    with time_machine.travel(T0, tick=False):
        for _ in range(3):
            assert fail(scan) == []
        assert alerts.check_did_not_run() == []
        assert succeed(scan) == []
    assert mailoutbox == []
    assert webhook_server.received == []
    assert not AlertDelivery.objects.exists()
    assert not AlertState.objects.exists()


def test_a_rule_for_one_schedule_ignores_the_others(tenant, admins, mailoutbox):
    watched, other = make_scan(tenant=tenant), make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, schedule=watched, consecutive_failures=1)
    assert fail(other) == []
    assert events(fail(watched)) == [("failing", "email", True)]
    assert len(mailoutbox) == 1


def test_a_disabled_rule_does_not_fire(tenant, admins, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1, enabled=False)
    assert fail(scan) == []
    assert mailoutbox == []


def test_each_rule_keeps_its_own_cooldown(tenant, admins, webhook_server, mailoutbox):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    make_alert_rule(
        tenant=tenant,
        consecutive_failures=2,
        email_admins=False,
        webhook_url=hook_url(webhook_server),
    )
    assert events(fail(scan)) == [("failing", "email", True)]
    assert events(fail(scan)) == [("failing", "webhook", True)]
    assert fail(scan) == []
    assert AlertState.objects.filter(schedule=scan, firing=True).count() == 2


# -- did not run -------------------------------------------------------------------------------


def test_did_not_run_alerts_a_schedule_without_success_for_longer_than_its_multiple(
    tenant, admins, webhook_server, mailoutbox
):
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        stale = make_scan(tenant=tenant, name="Stale", interval_seconds=60)
        fresh = make_scan(tenant=tenant, name="Fresh", interval_seconds=60)
    make_execution(schedule=stale, finished_at=T0 - timedelta(minutes=5))
    make_execution(schedule=fresh, finished_at=T0 - timedelta(seconds=10))
    make_execution(
        schedule=stale,
        status=Status.FAILED,
        error="Timed out",
        finished_at=T0 - timedelta(minutes=1),
    )
    rule = make_alert_rule(
        tenant=tenant,
        consecutive_failures=None,
        not_succeeded_multiple=3,
        cooldown_seconds=3600,
        webhook_url=hook_url(webhook_server),
    )

    with time_machine.travel(T0, tick=False) as traveller:
        deliveries = alerts.check_did_not_run()
        assert events(deliveries) == [
            ("did_not_run", "email", True),
            ("did_not_run", "webhook", True),
        ]
        assert {d.schedule_id for d in deliveries} == {stale.pk}
        assert mailoutbox[0].subject == "[Acme] Stale did not run"
        assert "has not succeeded since 2026-03-02 11:55:00 UTC" in mailoutbox[0].body
        assert "Last error: Timed out" in mailoutbox[0].body
        [payload] = payloads(webhook_server)
        assert payload["event"] == "did_not_run"
        assert payload["schedule"] == {"id": stale.pk, "name": "Stale", "kind": "scan"}
        assert payload["last_success_at"] == (T0 - timedelta(minutes=5)).isoformat()

        # Once per cool-down, however often the loop checks.
        traveller.shift(timedelta(seconds=30))
        assert alerts.check_did_not_run() == []
        traveller.shift(timedelta(seconds=3600))
        reminder = alerts.check_did_not_run()
        # By now the fresh one is overdue as well; the stale one gets its reminder.
        assert sorted((d.schedule_id, d.channel) for d in reminder) == sorted(
            [(stale.pk, "email"), (stale.pk, "webhook"), (fresh.pk, "email"), (fresh.pk, "webhook")]
        )

        assert events(succeed(stale)) == [
            ("recovered", "email", True),
            ("recovered", "webhook", True),
        ]
    assert AlertDelivery.objects.filter(rule=rule, event="did_not_run").count() == 6
    assert [p["event"] for p in payloads(webhook_server)].count("recovered") == 1


def test_did_not_run_counts_from_creation_when_a_schedule_never_succeeded(tenant, admins):
    with time_machine.travel(T0 - timedelta(minutes=10), tick=False):
        old = make_scan(tenant=tenant, interval_seconds=60)
    with time_machine.travel(T0 - timedelta(minutes=1), tick=False):
        new = make_scan(tenant=tenant, interval_seconds=60)
    make_alert_rule(tenant=tenant, consecutive_failures=None, not_succeeded_multiple=3)
    with time_machine.travel(T0, tick=False):
        deliveries = alerts.check_did_not_run()
    assert [(d.schedule_id, d.event) for d in deliveries] == [(old.pk, "did_not_run")]
    assert new.pk not in {d.schedule_id for d in deliveries}


def test_did_not_run_skips_disabled_paused_and_one_off_schedules(tenant, admins):
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        disabled = make_scan(tenant=tenant, enabled=False)
        paused = make_scan(tenant=tenant, paused_until=T0 + timedelta(hours=1))
        once = make_scan(
            tenant=tenant,
            trigger_type="once",
            interval_seconds=None,
            run_at=T0 - timedelta(minutes=30),
        )
        # Paused until a minute ago: its periods count from the end of the pause.
        resumed = make_scan(tenant=tenant, paused_until=T0 - timedelta(minutes=1))
    make_alert_rule(tenant=tenant, consecutive_failures=None, not_succeeded_multiple=2)
    with time_machine.travel(T0, tick=False):
        assert alerts.check_did_not_run() == []
    assert {disabled.pk, paused.pk, once.pk, resumed.pk}.isdisjoint(
        AlertState.objects.values_list("schedule_id", flat=True)
    )


def test_did_not_run_skips_the_schedules_of_an_inactive_tenant(tenant, admins):
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=None, not_succeeded_multiple=2)
    type(tenant).objects.filter(pk=tenant.pk).update(is_active=False)
    with time_machine.travel(T0, tick=False):
        assert alerts.check_did_not_run() == []


def test_did_not_run_measures_a_cron_schedule_by_its_own_gaps(tenant, admins):
    # Weekdays at 09:00: the weekend is not "late".
    with time_machine.travel(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), tick=False):
        daily = make_scan(
            tenant=tenant,
            trigger_type="cron",
            interval_seconds=None,
            cron_expression="0 9 * * 1-5",
            timezone="UTC",
        )
    friday = datetime(2026, 3, 6, 9, 0, 5, tzinfo=UTC)
    make_execution(schedule=daily, scheduled_for=friday, finished_at=friday)
    make_alert_rule(tenant=tenant, consecutive_failures=None, not_succeeded_multiple=1)

    # The Monday run is due at 09:00; a whole period later it still has not succeeded.
    for moment, alerted in [
        (datetime(2026, 3, 8, 23, 0, tzinfo=UTC), False),  # Sunday
        (datetime(2026, 3, 9, 9, 30, tzinfo=UTC), False),  # Monday, run in progress
        (datetime(2026, 3, 10, 8, 59, tzinfo=UTC), False),
        (datetime(2026, 3, 10, 9, 0, 1, tzinfo=UTC), True),
    ]:
        assert bool(alerts.check_did_not_run(now=moment)) is alerted, moment


def test_did_not_run_deadline_interpolates_fractional_multiples(tenant):
    with time_machine.travel(T0, tick=False):
        scan = make_scan(tenant=tenant, interval_seconds=100)
    first_fire = T0 + timedelta(seconds=100)
    assert alerts.did_not_run_deadline(scan, since=T0, multiple=1) == first_fire + timedelta(
        seconds=100
    )
    assert alerts.did_not_run_deadline(scan, since=T0, multiple=2.5) == first_fire + timedelta(
        seconds=250
    )
    # Far beyond the fire times walked, the last period stands for the rest.
    assert alerts.did_not_run_deadline(scan, since=T0, multiple=1000) == first_fire + timedelta(
        seconds=100_000
    )


def test_did_not_run_ends_with_the_schedule(tenant):
    with time_machine.travel(T0, tick=False):
        scan = make_scan(tenant=tenant, interval_seconds=60, end_at=T0 + timedelta(minutes=2))
    assert alerts.did_not_run_deadline(scan, since=T0, multiple=3) is None


# -- cost and robustness -----------------------------------------------------------------------


def test_on_execution_finished_without_rules_costs_one_query(tenant, django_assert_max_num_queries):
    scan = make_scan(tenant=tenant)
    failed = make_execution(schedule=scan, status=Status.FAILED)
    succeeded = make_execution(schedule=scan, status=Status.SUCCEEDED)
    Schedule.objects.filter(pk=scan.pk).update(consecutive_failures=5)
    make_alert_rule(tenant=make_tenant(), consecutive_failures=1)  # another tenant's
    with django_assert_max_num_queries(1):
        assert alerts.on_execution_finished(failed) == []
    with django_assert_max_num_queries(1):
        assert alerts.on_execution_finished(succeeded) == []


def test_on_execution_finished_below_the_threshold_costs_two_queries(
    tenant, django_assert_max_num_queries
):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=3)
    execution = make_execution(schedule=scan, status=Status.FAILED)
    with django_assert_max_num_queries(2):
        assert alerts.on_execution_finished(execution) == []


def test_did_not_run_check_queries_do_not_grow_with_schedules(
    tenant, django_assert_max_num_queries
):
    with time_machine.travel(T0 - timedelta(minutes=30), tick=False):
        scans = [make_scan(tenant=tenant, interval_seconds=60) for _ in range(30)]
    for scan in scans:
        make_execution(schedule=scan, finished_at=T0 - timedelta(seconds=30))
        make_execution(schedule=scan, status=Status.FAILED, finished_at=T0)
    make_alert_rule(tenant=tenant, consecutive_failures=None, not_succeeded_multiple=3)
    with time_machine.travel(T0, tick=False), django_assert_max_num_queries(2):
        assert alerts.check_did_not_run() == []


def test_alert_errors_are_logged_never_raised(tenant, monkeypatch, caplog):
    scan = make_scan(tenant=tenant)
    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1, not_succeeded_multiple=1)

    def database_gone(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr("scheduling.alerts.rules._claim", database_gone)
    with time_machine.travel(T0, tick=False):
        assert fail(scan) == []
        assert alerts.check_did_not_run() == []
    assert "Alert rules failed for execution" in caplog.text
    assert "did-not-run alert check failed" in caplog.text


def test_an_execution_of_a_deleted_schedule_is_ignored(tenant):
    scan = make_scan(tenant=tenant)
    make_alert_rule(tenant=tenant, consecutive_failures=1)
    execution = make_execution(schedule=scan, status=Status.FAILED)
    execution.schedule = None
    assert alerts.on_execution_finished(execution) == []
