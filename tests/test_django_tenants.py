"""The app in a host project on django-tenants, a PostgreSQL schema per tenant (tests/djtenants).

On a throwaway PostgreSQL server: ``migrate_schemas --shared`` installs the app's tables and
its change notifications in the public schema; two tenants, each with its own schema holding
different rows of a tenant app. With ``SCHEDULING_TENANT_CONTEXT =
"django_tenants.utils.tenant_context"`` a handler sees only its own tenant's rows, run in
this process or by a ``runscheduler`` with the thread, the process, the django_tasks
(django-tasks-db's worker) or the celery executor (a Celery worker on Redis), and the
worker's connection is back on ``public`` afterwards; the system checks pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests.hostapps.project import ROOT, HostProject
from tests.scheduling.processes import stop, wait_for
from tests.servers import PostgresServer, RedisServer, postgres_available, redis_available

pytestmark = [pytest.mark.process, pytest.mark.hosted, pytest.mark.timeout(300)]

NOTES = {"acme": ["acme's first note", "acme's second note"], "globex": ["globex's note"]}

SETUP = f"""
from django_tenants.utils import schema_context
from scheduling.models import ScheduledTask
from tests.djtenants.customers.models import Client
from tests.djtenants.notes.models import Note

for slug, texts in {NOTES!r}.items():
    client = Client(schema_name=slug, name=slug.title(), timezone="Europe/Berlin")
    client.save()  # creates the schema and migrates the tenant apps into it
    with schema_context(slug):
        for text in texts:
            Note.objects.create(text=text)
    ScheduledTask.objects.create(
        tenant=client, name="count", task_type="count_notes", options={{}},
        trigger_type="interval", interval_seconds=3600, enabled=False,
    )
print("OK")
"""

RUN_HERE = """
import json
from django.db import connection
from django.utils import timezone
from scheduling import runner
from scheduling.models import ScheduledTask

out = {}
for task in ScheduledTask.objects.filter(name="count").select_related("tenant"):
    execution = runner.claim(task, timezone.now(), claimed_by="test")
    runner.execute(execution.pk, worker="test:1")
    execution.refresh_from_db()
    out[task.tenant.schema_name] = {
        "status": execution.status,
        "result": execution.result,
        "error": execution.error,
        "schema_after": connection.schema_name,
    }
print(json.dumps(out))
"""

SCHEDULE_ONCE = """
from datetime import timedelta
from django.utils import timezone
from scheduling.models import ScheduledTask
from tests.djtenants.customers.models import Client

at = timezone.now() + timedelta(seconds=2)
for client in Client.objects.all():
    ScheduledTask.objects.create(
        tenant=client, name="once-{label}", task_type="count_notes", options={{}},
        trigger_type="once", run_at=at, misfire_grace_seconds=120,
    )
print("OK")
"""

# The outcomes of the once-schedules named "once-<label>", read from the public schema.
OUTCOMES = """
SELECT c.schema_name, e.status, e.result, e.error
FROM scheduling_execution e JOIN customers_client c ON c.id = e.tenant_id
WHERE e.schedule_name = %s
ORDER BY c.schema_name
"""


def run(project: HostProject, code: str, **env: str) -> str:
    """Run ``code`` in the project's ``manage.py shell``; return its last line of output."""
    result = project.manage("shell", "-c", code, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def project() -> Iterator[HostProject]:
    missing = postgres_available()
    if missing:
        pytest.skip(missing)
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database("hosted")
        host = HostProject("tests.djtenants.settings", "hosted", DATABASE_URL=url)
        migrate = host.manage("migrate_schemas", "--shared", "--noinput", "-v", "0")
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        assert run(host, SETUP) == "OK"
        yield host
    finally:
        server.stop()


def test_the_system_checks_pass(project):
    result = project.manage("check", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_change_notifications_are_installed_in_the_public_schema(project):
    triggers = run(
        project,
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        '    cursor.execute("SELECT c.relnamespace::regnamespace::text, t.tgname FROM pg_trigger t'
        " JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE 'scheduling_%' ORDER BY 2\")\n"
        "    print(sorted(cursor.fetchall()))",
    )
    assert triggers == repr(
        sorted(
            [
                ("public", "scheduling_manual_run_queued"),
                ("public", "scheduling_schedule_changed"),
                ("public", "scheduling_schedule_updated"),
            ]
        )
    )


def test_a_handler_sees_only_its_tenants_rows_and_the_connection_returns_to_public(project):
    outcomes = json.loads(run(project, RUN_HERE))

    assert outcomes == {
        slug: {
            "status": "succeeded",
            "result": {"schema": slug, "notes": sorted(texts)},
            "error": "",
            "schema_after": "public",
        }
        for slug, texts in NOTES.items()
    }


def test_without_the_tenant_context_a_handler_is_in_the_public_schema(project):
    # What the setting prevents: the tenant app's table exists in no schema on the path.
    outcomes = json.loads(run(project, RUN_HERE, HOSTED_TENANT_CONTEXT=""))

    for outcome in outcomes.values():
        assert outcome["status"] == "failed"
        assert 'relation "notes_note" does not exist' in outcome["error"]
    warned = project.manage("check", HOSTED_TENANT_CONTEXT="")
    assert "scheduling.W010" in warned.stderr


# The django_tasks executor's worker: django-tasks-db's, on the app's queue.
DB_WORKER = ["db_worker", "--queue-name", "scheduling", "--interval", "0.1", "--no-startup-delay"]


# The celery executor's worker: the demo project's Celery app, on the app's queue.
CELERY_WORKER = [
    *("-m", "celery", "-A", "project", "worker", "-Q", "scheduling", "-n", "worker-1@%h"),
    *("-c", "1", "-P", "prefork", "--without-gossip", "--without-mingle", "-l", "warning"),
]


@pytest.mark.parametrize("executor", ["thread", "process", "django_tasks", "celery"])
def test_runscheduler_runs_each_handler_in_its_tenants_schema(project, executor, tmp_path):
    assert run(project, SCHEDULE_ONCE.format(label=executor)) == "OK"
    log = tmp_path / "processes.log"
    env = {"SCHEDULING_EXECUTOR": executor}
    broker = None
    if executor == "celery":
        missing = redis_available()
        if missing:
            pytest.skip(missing)
        broker = RedisServer()
        broker.start()
        env["CELERY_BROKER_URL"] = broker.url
    processes = [project.start("runscheduler", "-v", "2", log=log, **env)]
    if executor == "django_tasks":
        processes.append(
            project.start(*DB_WORKER, "--no-reload", "--worker-id", "worker-1", log=log, **env)
        )
    if executor == "celery":
        with log.open("ab") as handle:
            processes.append(
                subprocess.Popen(
                    [sys.executable, *CELERY_WORKER],
                    cwd=ROOT,
                    env=project.env(**env),
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    try:

        def finished() -> list[tuple[object, ...]] | None:
            with psycopg.connect(project.environment["DATABASE_URL"]) as connection:
                rows = connection.execute(OUTCOMES, [f"once-{executor}"]).fetchall()
            done = [row for row in rows if row[1] not in ("queued", "running")]
            return rows if len(done) == len(NOTES) else None

        assert wait_for(finished, 90, 1.0), log.read_text()[-3000:]
        rows = finished()
    finally:
        for process in processes:
            stop(process)
        if broker is not None:
            broker.stop()
    assert rows is not None
    # A wrong outcome shows the processes' log too (a child's traceback goes there).
    assert rows == [
        (slug, "succeeded", {"schema": slug, "notes": sorted(texts)}, "")
        for slug, texts in sorted(NOTES.items())
    ], log.read_text()[-6000:]
