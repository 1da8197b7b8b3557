"""The host project's own work, end to end, in every executor, with real processes.

One throwaway PostgreSQL and Redis (``tests.scale.harness.Cluster``) serve the whole module.
For each executor (``thread``, ``process``, ``celery``, ``django_tasks``) a real
``runscheduler`` starts with settings that declare one schedule
(``SCHEDULING_DECLARED_SCHEDULES``, a system schedule of the task type ``test_add``), next to
the executor's real workers (a Celery worker, django-tasks-db ``db_worker``). Schedules of the
host project's functions are then created through the REST API: a task type (``test_add``,
with options), an ``async def`` task type (``test_async``), a ``django.tasks`` task
(``test_refresh_feed``) and a coroutine ``django.tasks`` task (``test_shout``), all firing
within seconds. Each must get a *succeeded* execution with its handler's result, run by that
executor, and its executions must be listed by the API and the admin.

The last test cancels a running execution on Celery whose handler does not poll
(``test_block``: one long ``time.sleep``): the leader revokes it with ``terminate=True``, the
worker's pool process dies, and the handler never gets to its end.

The processes get ``tests.scale.settings_own_work``. What runs in Django (creating schedules,
the API, the admin, ``runner.cancel``) runs in ``manage.py shell`` processes on the cluster's
database; the rest of the suite's test database is left alone. Every process is bounded in
time and killed in ``finally`` (and by the cluster when the module ends).

Without PostgreSQL, Redis, Celery or django-tasks-db these tests skip, except under
``CI=true``, where a missing component fails them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.ci import OTHER_RUN
from tests.scale.harness import Cluster, skip_reason, wait_for

pytestmark = [
    pytest.mark.process,
    # They bring their own servers, whatever database the rest of the suite runs on.
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")),
        reason=f"{OTHER_RUN}the cluster tests start their own PostgreSQL; they run in the "
        "SQLite run",
    ),
]

SETTINGS = "tests.scale.settings_own_work"
EXECUTORS = ["thread", "process", "celery", "django_tasks"]
ADMIN = "own-work-admin"
TENANT = "own-work"
RESULT = "OWN_WORK_RESULT "
# How long the executions of one executor may take to succeed, processes started.
SETTLE_SECONDS = 60


def missing(reason: str) -> None:
    """Skip for a missing component; under CI=true, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing component is a failure)", pytrace=False)
    pytest.skip(reason)


def settings_env(**extra: str) -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": SETTINGS, **extra}


def shell(cluster: Cluster, code: str, **args: object) -> dict:
    """Run ``code`` in ``manage.py shell`` on the cluster's database with ``args`` (as
    ``ARGS``); return what it printed after ``RESULT``, read as JSON."""
    output = cluster.python(
        "import json, os\nARGS = json.loads(os.environ['OWN_WORK_ARGS'])\n" + code,
        **settings_env(OWN_WORK_ARGS=json.dumps(args)),
    )
    lines = [line for line in output.splitlines() if line.startswith(RESULT)]
    assert lines, f"no result from the shell:\n{output[-3000:]}"
    return json.loads(lines[-1][len(RESULT) :])


SETUP = f"""
from django.contrib.auth import get_user_model
from tenants.models import Tenant
tenant, _ = Tenant.objects.get_or_create(slug={TENANT!r}, defaults={{"name": "Own work"}})
get_user_model().objects.create_superuser({ADMIN!r}, "admin@example.com", "unused")
print({RESULT!r} + json.dumps({{"tenant": tenant.pk}}))
"""

# Creates ARGS["schedules"] through the REST API as the superuser, as a host project's
# operator would; prints their ids by name.
CREATE = f"""
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.test.utils import setup_test_environment
from django.utils import timezone
from rest_framework.test import APIClient

setup_test_environment()
api = APIClient()
api.force_authenticate(get_user_model().objects.get(username={ADMIN!r}))
when = (timezone.now() + timedelta(seconds=ARGS["start_in"])).isoformat()
created = {{}}
for fields in ARGS["schedules"]:
    start = {{"run_at" if fields["trigger_type"] == "once" else "start_at": when}}
    response = api.post("/api/tasks/", {{**start, **fields}}, format="json")
    assert response.status_code == 201, (response.status_code, response.content)
    created[fields["name"]] = response.json()["id"]
print({RESULT!r} + json.dumps(created))
"""

# What the superuser sees: each schedule's executions in the API, the declared schedule in
# the API, and the admin's execution changelist.
LOOK = f"""
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment
from rest_framework.test import APIClient

setup_test_environment()
user = get_user_model().objects.get(username={ADMIN!r})
api = APIClient()
api.force_authenticate(user)
seen = {{"executions": {{}}}}
for pk in ARGS["schedules"]:
    response = api.get(f"/api/executions/?schedule={{pk}}")
    seen["executions"][str(pk)] = [response.status_code, response.json()]
response = api.get(f"/api/tasks/{{ARGS['declared']}}/")
seen["declared"] = [response.status_code, response.json()]
admin = Client()
admin.force_login(user)
response = admin.get("/admin/scheduling/execution/")
seen["admin"] = [response.status_code, response.content.decode()]
print({RESULT!r} + json.dumps(seen))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = skip_reason()
    if reason:
        missing(reason)
    with Cluster(tmp_path_factory.mktemp("own-work"), database="own_work") as running:
        # django-tasks-db's table, which the harness's settings do not install.
        running.manage("migrate", "--no-input", "-v", "0", **settings_env())
        running.tenant_pk = shell(running, SETUP)["tenant"]  # type: ignore[attr-defined]
        yield running


def start_db_worker(cluster: Cluster, name: str, **env: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "manage.py",
        "db_worker",
        "--queue-name",
        "scheduling",
        "--interval",
        "0.1",
        "--no-startup-delay",
        "--no-reload",
        "--worker-id",
        name,
    ]
    return cluster._spawn(name, command, **env)


def start_processes(cluster: Cluster, executor: str, label: str, **env: str) -> subprocess.Popen:
    """Start the executor's workers, then ``runscheduler``, named ``...-label``; return the
    scheduler once it leads."""
    env = settings_env(SCHEDULING_EXECUTOR=executor, **env)
    if executor == "celery":
        cluster.start_worker(f"celery-{label}", concurrency=2, **env)
    elif executor == "django_tasks":
        start_db_worker(cluster, f"db-worker-{label}", **env)
    scheduler = cluster.start_scheduler(
        f"scheduler-{label}", "--max-seconds", "150", "--lease-ttl", "5", **env
    )
    assert wait_for(lambda: cluster.leader_pid() == scheduler.pid, 40), cluster.logs()
    return scheduler


def stop_processes(cluster: Cluster, label: str) -> dict[str, int | None]:
    """SIGTERM the processes named ``...-label`` (SIGKILL after 30 s); return their exit codes."""
    return {
        name: cluster.stop(name)
        for name in list(cluster.processes)
        if name.endswith(f"-{label}") and cluster.processes[name].returncode is None
    }


def executions(cluster: Cluster, pks: list[int]) -> list[dict]:
    rows = cluster.query(
        "SELECT id, schedule_id, status, result, tenant_id, worker, claimed_by, error"
        " FROM scheduling_execution WHERE schedule_id = ANY(%s) ORDER BY id",
        (pks,),
    )
    names = ("id", "schedule", "status", "result", "tenant", "worker", "claimed_by", "error")
    return [dict(zip(names, row, strict=True)) for row in rows]


def succeeded(cluster: Cluster, pks: list[int]) -> dict[int, dict] | None:
    """The first succeeded execution of each of ``pks``; None while one has none."""
    found: dict[int, dict] = {}
    for row in executions(cluster, pks):
        if row["status"] == "succeeded":
            found.setdefault(row["schedule"], row)
    return found if set(found) == set(pks) else None


def pid_of(worker: str) -> int:
    return int(worker.rsplit(":", 1)[1])


def declaration(executor: str) -> dict:
    return {
        "kind": "task",
        "type": "test_add",
        "name": f"Declared add ({executor})",
        "trigger_type": "interval",
        "interval_seconds": 2,
        # Soon after the scheduler has started; should it start later, the next 2-second
        # occurrence fires instead, and the schedule disables itself after one success.
        "start_at": (datetime.now(UTC) + timedelta(seconds=6)).isoformat(),
        "max_executions": 1,
        "misfire_grace_seconds": 60,
        "options": {"a": 40, "b": 2},
    }


def own_schedules(executor: str, tenant: str) -> list[dict]:
    common = {
        "tenant": tenant,
        "trigger_type": "interval",
        "interval_seconds": 2,
        # From start_at (or the next 2-second mark, should the scheduler see it late) until
        # the first success.
        "max_executions": 1,
        "misfire_grace_seconds": 60,
    }
    return [
        {
            **common,
            "name": f"Add ({executor})",
            "task_type": "test_add",
            "options": {"a": 2, "b": 3},
        },
        {
            **common,
            "name": f"Async ({executor})",
            "task_type": "test_async",
            "options": {"seconds": 0.1, "count_schedules": True},
        },
        {
            **common,
            "name": f"Refresh feed ({executor})",
            "task_type": "test_refresh_feed",
            "options": {"url": "https://example.com/feed.xml", "limit": 3},
        },
        {
            **common,
            "name": f"Shout ({executor})",
            "task_type": "test_shout",
            "options": {"url": "hey", "limit": 3},
        },
    ]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_the_projects_own_functions_run_in_every_executor(cluster, executor):
    if executor == "django_tasks":
        try:
            import django_tasks_db  # noqa: F401
        except ImportError:
            missing("django-tasks-db is not installed (pip install -e '.[test]')")
    declared_entry = declaration(executor)
    scheduler = start_processes(
        cluster, executor, executor, OWN_WORK_DECLARED=json.dumps([declared_entry])
    )
    try:
        # runscheduler synced the declaration as it started, before it took the lease.
        ((declared_pk, declared_tenant, declared_flag),) = cluster.query(
            "SELECT id, tenant_id, declared FROM scheduling_schedule WHERE kind = 'task'"
            " AND name = %s",
            (declared_entry["name"],),
        )
        assert declared_tenant is None and declared_flag is True
        created = shell(cluster, CREATE, schedules=own_schedules(executor, TENANT), start_in=2)
        pks = {"declared": declared_pk, **created}
        done = wait_for(lambda: succeeded(cluster, list(pks.values())), SETTLE_SECONDS, 0.5)
        assert done, (executions(cluster, list(pks.values())), cluster.logs())
        seen = shell(cluster, LOOK, schedules=list(pks.values()), declared=declared_pk)
    finally:
        exit_codes = stop_processes(cluster, executor)
    assert exit_codes[f"scheduler-{executor}"] == 0, cluster.logs()

    # Each handler's result, as the project's function returned it.
    tenant = cluster.tenant_pk
    result = {name: done[pk]["result"] for name, pk in pks.items()}
    # test_add returns the run's options as its handler received them (cleaned by the form).
    assert result["declared"] == {"sum": 42, "tenant": None, "options": {"a": 40, "b": 2}}
    assert result[f"Add ({executor})"] == {"sum": 5, "tenant": tenant, "options": {"a": 2, "b": 3}}
    async_result = result[f"Async ({executor})"]
    assert async_result["slept"] == 0.1 and async_result["schedules"] >= 5
    feed = {"url": "https://example.com/feed.xml", "limit": 3}
    assert result[f"Refresh feed ({executor})"] == feed
    assert result[f"Shout ({executor})"] == {"return_value": "HEYHEYHEY"}
    assert done[declared_pk]["tenant"] is None
    for name, pk in created.items():
        assert done[pk]["tenant"] == tenant, name

    # ... run by the executor: in the scheduler (thread), in a child of it (process), in a
    # Celery worker's pool process or in the db_worker (django_tasks).
    workers = {pid_of(row["worker"]) for row in done.values()}
    claims = {row["claimed_by"].split(":", 1)[0] for row in done.values()}
    if executor == "thread":
        assert workers == {scheduler.pid}
    else:
        assert scheduler.pid not in workers
    if executor == "process":
        assert len(workers) == len(done)  # a child process each
    if executor == "django_tasks":
        assert workers == {cluster.processes[f"db-worker-{executor}"].pid}
    # The claim's mark: published to Celery, enqueued on the task backend, or the leader's.
    mark = {"celery": {"celery"}, "django_tasks": {"tasks"}}.get(executor)
    assert claims == mark if mark else not claims & {"celery", "tasks"}

    # The API lists each schedule's executions; the declared schedule is a system schedule
    # marked declared.
    for name, pk in pks.items():
        status, page = seen["executions"][str(pk)]
        assert status == 200, (name, page)
        listed = {row["id"]: row for row in page["results"]}
        assert {row["schedule"] for row in page["results"]} == {pk}, name
        row = listed[done[pk]["id"]]
        assert row["status"] == "succeeded" and row["result"] == done[pk]["result"], name
    status, schedule = seen["declared"]
    assert status == 200, schedule
    assert schedule["tenant"] is None and schedule["declared"] is True
    assert schedule["task_type"] == "test_add"
    assert schedule["options"] == {"a": 40, "b": 2}
    # The admin's execution list shows them all, the system schedule's included, each
    # linked to its schedule.
    status, html = seen["admin"]
    assert status == 200
    for name, pk in pks.items():
        name = declared_entry["name"] if name == "declared" else name
        assert f'/admin/scheduling/scheduledtask/{pk}/change/">{name}</a>' in html, name


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux: /proc; else a signal 0)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Waits for the execution of ARGS["schedule"] to run its handler (the "started" marker
# written), then cancels it as the API's cancel does: runner.cancel.
CANCEL = f"""
import time
from pathlib import Path
from scheduling import runner
from scheduling.models import Execution, Status

started = Path(ARGS["started"])
deadline = time.monotonic() + ARGS["timeout"]
execution = None
while time.monotonic() < deadline:
    execution = Execution.objects.filter(
        schedule_id=ARGS["schedule"], status=Status.RUNNING
    ).first()
    if execution is not None and started.exists():
        break
    execution = None
    time.sleep(0.05)
assert execution is not None, "the execution did not start"
runner.cancel(execution)
print({RESULT!r} + json.dumps({{"execution": execution.pk, "at": time.time()}}))
"""


def test_cancelling_a_running_execution_on_celery_terminates_its_handler(cluster, tmp_path):
    started, finished = tmp_path / "started", tmp_path / "finished"
    seconds = 8.0
    start_processes(cluster, "celery", "cancel")
    try:
        block = {
            "tenant": TENANT,
            "name": "Block (celery)",
            "task_type": "test_block",
            # Once: it fires even if the scheduler sees it after its time (within the grace),
            # and never again.
            "trigger_type": "once",
            "misfire_grace_seconds": 60,
            "timeout_seconds": 120,
            "max_retries": 0,
            "options": {"seconds": seconds, "started": str(started), "finished": str(finished)},
        }
        schedule = shell(cluster, CREATE, schedules=[block], start_in=2)["Block (celery)"]
        cancelled = shell(cluster, CANCEL, schedule=schedule, started=str(started), timeout=60)
        handler_pid = int(started.read_text())
        # The leader revokes it (terminate=True): the pool process running the handler dies.
        assert wait_for(lambda: not alive(handler_pid), 15, 0.1), cluster.logs()
        terminated_after = time.time() - cancelled["at"]
        # Well past the handler's sleep: it never got to its end.
        time.sleep(max(0.0, cancelled["at"] + seconds + 2 - time.time()))
        assert not finished.exists()
        (row,) = executions(cluster, [schedule])
    finally:
        stop_processes(cluster, "cancel")
    assert row["id"] == cancelled["execution"]
    assert row["status"] == "cancelled" and row["result"] is None, row
    assert row["error"] == "Cancelled."
    assert pid_of(row["worker"]) == handler_pid
    assert "Revoked 1 cancelled Celery execution(s)." in cluster.log("scheduler-cancel")
    print(f"handler terminated {terminated_after:.2f} s after the cancel")
