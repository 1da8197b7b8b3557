"""A host project on django-organizations: every organization is a tenant."""

import os

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "organizations"]  # noqa: F405

SCHEDULING_TENANT_MODEL = "organizations.Organization"
SCHEDULING_TENANT_RESOLVER = os.environ.get(
    # tests/scheduling/integrations/test_organizations.py tries a subclass too.
    "SCHEDULING_TENANT_RESOLVER_OVERRIDE",
    "scheduling.integrations.organizations.OrganizationResolver",
)
