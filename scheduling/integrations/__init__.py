"""Integrations with the host's packages: one module each.

The tenancy adapters are imported only when a setting names them.

A context adapter imports its package at the top, so naming one whose package is not installed
fails the setting's system check (``scheduling.E058``); the resolver needs the package's
organization model as the tenant model (``scheduling.E001`` when it is missing).

- ``scopes.tenant_context``: django-scopes, for ``SCHEDULING_TENANT_CONTEXT``;
- ``multitenant.tenant_context``: django-multitenant, for ``SCHEDULING_TENANT_CONTEXT``;
- ``organizations.OrganizationResolver``: django-organizations' members and their roles, for
  ``SCHEDULING_TENANT_RESOLVER``;
- ``sentry``: handler exceptions and cron monitors, used by the runner where the project
  initialised the Sentry SDK (the package is optional there).

django-tenants needs no adapter: its ``django_tenants.utils.tenant_context`` already has the
shape ``SCHEDULING_TENANT_CONTEXT`` asks for.
"""
