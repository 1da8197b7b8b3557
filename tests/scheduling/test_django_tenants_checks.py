"""The system checks of a django-tenants project (scheduling.E061, E062, W010), on the settings
a project could have; tests/test_django_tenants.py checks a real project passes them."""

from __future__ import annotations

from django.test import override_settings

from scheduling.checks import django_tenants_problems

APPS = ["django_tenants", "customers", "scheduling", "django_apscheduler", "tenants", "notes"]
SHARED = ["django_tenants", "customers", "scheduling", "django_apscheduler", "tenants"]
CONTEXT = "django_tenants.utils.tenant_context"


def ids(**settings):
    values = {
        "installed_apps": APPS,
        "shared_apps": SHARED,
        "tenant_apps": ["notes"],
        "tenant_model": "customers.Client",
    }
    values.update(settings)
    return [problem.id for problem in django_tenants_problems(**values)]


@override_settings(SCHEDULING_TENANT_MODEL="customers.Client", SCHEDULING_TENANT_CONTEXT=CONTEXT)
def test_a_project_set_up_as_the_readme_says_has_no_problem():
    assert ids() == []


@override_settings(SCHEDULING_TENANT_MODEL="customers.Client", SCHEDULING_TENANT_CONTEXT=CONTEXT)
def test_the_apps_tables_must_be_shared_and_not_a_tenants():
    assert ids(shared_apps=[a for a in SHARED if a != "scheduling"]) == ["scheduling.E061"]
    assert ids(tenant_apps=["notes", "django_apscheduler"]) == ["scheduling.E061"]
    # An app the project does not install is not asked for.
    assert ids(installed_apps=[a for a in APPS if a != "tenants"], shared_apps=SHARED[:-1]) == []


@override_settings(SCHEDULING_TENANT_MODEL="tenants.Tenant", SCHEDULING_TENANT_CONTEXT=CONTEXT)
def test_the_apps_tenant_must_be_django_tenants_tenant():
    [problem] = django_tenants_problems(
        installed_apps=APPS, shared_apps=SHARED, tenant_apps=[], tenant_model="customers.Client"
    )
    assert problem.id == "scheduling.E062"
    assert 'SCHEDULING_TENANT_MODEL = "customers.Client"' in problem.hint


@override_settings(SCHEDULING_TENANT_MODEL="customers.Client", SCHEDULING_TENANT_CONTEXT=None)
def test_without_a_tenant_context_handlers_would_read_the_public_schema():
    assert ids() == ["scheduling.W010"]
