"""django-multitenant (``scheduling.integrations.multitenant``), for real.

A host project (tests/hostapps/multitenant) whose tenant is a ``TenantModel`` account with
projects. A handler sees only its account's projects; the thread it ran on carries no tenant
afterwards, also after a failure, so a system schedule run next on that thread sees every
account's rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostapps.project import HostProject, migrated

pytestmark = [pytest.mark.process, pytest.mark.hosted, pytest.mark.timeout(300)]

PROJECTS = {"acme": ["anvil", "rocket"], "globex": ["moon"]}
EVERY_PROJECT = sorted(name for names in PROJECTS.values() for name in names)

SETUP = f"""
import json
from tests.hostapps.multitenant.models import Account, Project

for slug, names in {PROJECTS!r}.items():
    account = Account.objects.create(name=slug.title(), slug=slug)
    for name in names:
        Project.objects.create(account=account, name=name)
print(json.dumps("OK"))
"""

# One run after the other on this one thread, as a worker thread of the executor runs them:
# (tenant or None for a system schedule, task type) -> what the handler returned or the error,
# and the thread's current tenant afterwards.
RUNS = """
import json
import uuid
from django.utils import timezone
from django_multitenant.utils import get_current_tenant
from scheduling import runner, services
from scheduling.models import ScheduledTask
from tests.hostapps.multitenant.models import Account

def run(slug, task_type):
    task = services.create_schedule(
        model=ScheduledTask, tenant=Account.objects.get(slug=slug) if slug else None,
        name=uuid.uuid4().hex, task_type=task_type, options={},
        trigger_type="interval", interval_seconds=3600, enabled=False,
    )
    execution = runner.claim(task, timezone.now(), claimed_by="test")
    runner.execute(execution.pk, worker="test:1")
    execution.refresh_from_db()
    current = get_current_tenant()
    return [slug, execution.result or execution.error, current and current.slug]

print(json.dumps([run(slug, task_type) for slug, task_type in %s]))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProject]:
    with migrated("tests.hostapps.settings_multitenant", tmp_path_factory.mktemp("mt")) as host:
        assert host.json(SETUP) == "OK"
        yield host


def runs(project: HostProject, plan: list[tuple[str | None, str]], *, asgiref: bool) -> list:
    return project.json(RUNS % (plan,), HOST_TENANT_USE_ASGIREF="1" if asgiref else "")


def test_the_host_projects_checks_pass_and_its_migrations_are_complete(project):
    result = project.manage("check", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    result = project.manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("asgiref", [False, True], ids=["thread-local", "asgiref-local"])
def test_each_handler_sees_its_accounts_rows_and_leaves_no_tenant_on_the_thread(project, asgiref):
    plan = [
        ("acme", "list_projects"),
        ("globex", "list_projects"),
        (None, "list_projects"),
        ("acme", "count_projects_then_fail"),
        (None, "list_projects"),
    ]
    assert runs(project, plan, asgiref=asgiref) == [
        ["acme", {"current": "acme", "projects": PROJECTS["acme"]}, None],
        ["globex", {"current": "globex", "projects": PROJECTS["globex"]}, None],
        [None, {"current": None, "projects": EVERY_PROJECT}, None],
        ["acme", "RuntimeError: failed with 2 projects in sight", None],
        [None, {"current": None, "projects": EVERY_PROJECT}, None],
    ]


@pytest.mark.parametrize(
    ("asgiref", "seen"),
    [
        # The event loop of an async handler runs on a thread of its own: a thread-local
        # tenant is not there when its queries are built (hence TENANT_USE_ASGIREF).
        (False, EVERY_PROJECT),
        (True, PROJECTS["globex"]),
    ],
    ids=["thread-local", "asgiref-local"],
)
def test_an_async_handler_sees_its_tenant_through_asgiref_locals(project, asgiref, seen):
    outcome = runs(project, [("globex", "list_projects_async")], asgiref=asgiref)
    assert outcome == [["globex", {"projects": seen}, None]]
