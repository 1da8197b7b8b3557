"""django-organizations (``scheduling.integrations.organizations.OrganizationResolver``), for real.

A host project whose tenant model is ``organizations.Organization``: the owner of an
organization is its ``owner``, members with ``is_admin`` are ``admin``s, the other members
``viewer``s (or what a subclass's ``member_role`` says); the API shows each user the
organizations they belong to and lets them do what their role there allows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from scheduling.integrations.organizations import OrganizationResolver
from tests.factories import make_user
from tests.hostapps.project import HostProject, migrated

pytestmark = [pytest.mark.hosted, pytest.mark.timeout(300)]

# Alice founds Acme (its first member: admin and owner), Bob is an admin there, Carol a plain
# member; Dave founds Globex, where Carol is an admin.
SETUP = """
import json
from django.contrib.auth import get_user_model
from organizations.models import Organization
from scheduling import services
from scheduling.models import ScheduledTask

User = get_user_model()
users = {
    name: User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    for name in ("alice", "bob", "carol", "dave", "erin")
}
User.objects.filter(username="erin").update(is_active=False)
User.objects.create_superuser("root", "root@example.com", "pw")
acme = Organization.objects.create(name="Acme", slug="acme")
globex = Organization.objects.create(name="Globex", slug="globex")
acme.add_user(users["alice"])
acme.add_user(users["bob"], is_admin=True)
acme.add_user(users["carol"])
acme.add_user(users["erin"], is_admin=True)
globex.add_user(users["dave"])
globex.add_user(users["carol"], is_admin=True)
for org in (acme, globex):
    services.create_schedule(
        model=ScheduledTask, tenant=org, name=f"{org.slug} sync", task_type="test_add",
        options={"a": 1}, trigger_type="interval", interval_seconds=3600,
    )
print(json.dumps("OK"))
"""

TENANTS = """
import json
from django.contrib.auth import get_user_model
from organizations.models import Organization
from scheduling.tenancy import tenant_roles, visible_tenant_ids

slug = dict(Organization.objects.values_list("pk", "slug"))
out = {}
for user in get_user_model().objects.order_by("username"):
    ids = {role: visible_tenant_ids(user, min_role=role) for role in
           (None, "viewer", "operator", "admin", "owner")}
    out[user.username] = {
        "by_min_role": {
            str(role): None if found is None else sorted(slug[pk] for pk in found)
            for role, found in ids.items()
        },
        "roles": [[str(tenant), role] for tenant, role in tenant_roles(user)],
    }
print(json.dumps(out))
"""

API = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from scheduling.models import ScheduledTask

task = {t.tenant.slug: t.pk for t in ScheduledTask.objects.select_related("tenant")}
out = {}
for name in ("alice", "bob", "carol", "dave", "root"):
    client = Client()
    client.force_login(get_user_model().objects.get(username=name))
    listed = client.get("/api/tasks/").json()["results"]
    run = client.post(f"/api/tasks/{task['acme']}/run/", "{}", content_type="application/json")
    out[name] = {
        "listed": sorted(row["name"] for row in listed),
        "acme": client.get(f"/api/tasks/{task['acme']}/").status_code,
        # 202 queues a run; 200 answers with the same run, queued by someone before.
        "run acme": "queued" if run.status_code in (200, 202) else run.status_code,
    }
print(json.dumps(out))
"""

ALERTS = """
import json
from organizations.models import Organization
from scheduling.alerts.delivery import admin_emails

print(json.dumps({org.slug: admin_emails(org) for org in Organization.objects.all()}))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProject]:
    directory = tmp_path_factory.mktemp("organizations")
    with migrated("tests.hostapps.settings_organizations", directory) as host:
        assert host.json(SETUP) == "OK"
        yield host


@pytest.mark.process
def test_the_host_projects_checks_pass_and_its_migrations_are_complete(project):
    result = project.manage("check", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr[-3000:]
    result = project.manage("makemigrations", "--check", "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.process
def test_roles_come_from_ownership_and_is_admin_and_plain_members_are_viewers(project):
    tenants = project.json(TENANTS)

    def holding(*slugs):  # the organizations seen with each min_role, lowest first
        return dict(zip(["None", "viewer", "operator", "admin", "owner"], slugs, strict=True))

    acme, globex, both = ["acme"], ["globex"], ["acme", "globex"]
    assert tenants["alice"]["by_min_role"] == holding(acme, acme, acme, acme, acme)
    assert tenants["bob"]["by_min_role"] == holding(acme, acme, acme, acme, [])
    assert tenants["carol"]["by_min_role"] == holding(both, both, globex, globex, [])
    assert tenants["dave"]["by_min_role"] == holding(globex, globex, globex, globex, globex)
    assert tenants["erin"]["by_min_role"] == holding([], [], [], [], [])  # inactive user
    assert tenants["root"]["by_min_role"] == holding(None, None, None, None, None)  # all
    assert tenants["carol"]["roles"] == [["Acme", "Viewer"], ["Globex", "Admin"]]
    assert tenants["alice"]["roles"] == [["Acme", "Owner"]]


@pytest.mark.process
def test_the_api_shows_each_member_their_organizations_and_allows_what_their_role_does(project):
    api = project.json(API)

    assert api == {
        "alice": {"listed": ["acme sync"], "acme": 200, "run acme": "queued"},
        "bob": {"listed": ["acme sync"], "acme": 200, "run acme": "queued"},
        # A viewer in Acme: sees its task, may not run it.
        "carol": {"listed": ["acme sync", "globex sync"], "acme": 200, "run acme": 403},
        # Not a member of Acme: its task does not exist for him.
        "dave": {"listed": ["globex sync"], "acme": 404, "run acme": 404},
        "root": {"listed": ["acme sync", "globex sync"], "acme": 200, "run acme": "queued"},
    }


@pytest.mark.process
def test_a_subclass_makes_plain_members_operators(project):
    resolver = "tests.hostapps.resolvers.OperatingMembers"
    tenants = project.json(TENANTS, SCHEDULING_TENANT_RESOLVER_OVERRIDE=resolver)
    assert tenants["carol"]["by_min_role"]["operator"] == ["acme", "globex"]
    assert tenants["carol"]["roles"] == [["Acme", "Operator"], ["Globex", "Admin"]]
    api = project.json(API, SCHEDULING_TENANT_RESOLVER_OVERRIDE=resolver)
    assert api["carol"]["run acme"] == "queued"


@pytest.mark.process
def test_alerts_go_to_the_active_owner_and_admins(project):
    assert project.json(ALERTS) == {
        "acme": ["alice@example.com", "bob@example.com"],  # erin is an admin, but inactive
        "globex": ["carol@example.com", "dave@example.com"],
    }


class AdminMembers(OrganizationResolver):
    member_role = "superuser"


def test_a_member_role_that_is_no_role_is_refused():
    with pytest.raises(ImproperlyConfigured) as raised:
        AdminMembers()
    assert str(raised.value) == (
        "AdminMembers.member_role is 'superuser'; it must be one of "
        "'owner', 'admin', 'operator', 'viewer'."
    )


@pytest.mark.django_db
def test_a_tenant_model_that_is_no_organization_is_refused():
    with pytest.raises(ImproperlyConfigured) as raised:
        OrganizationResolver().tenant_ids(make_user(username="alice"))
    assert str(raised.value) == (
        "OrganizationResolver needs a django-organizations organization model as "
        "SCHEDULING_TENANT_MODEL; tenants.Tenant has no organization_users."
    )
