"""A host project on django-tenants (a PostgreSQL schema per tenant) that installs the app.

``customers`` holds the tenant model (``Client``, django-tenants' ``TenantMixin``) and its
domains, in the public schema; ``notes`` is a tenant app, migrated into each tenant's schema.
tests/test_django_tenants.py runs it on a throwaway PostgreSQL server.
"""
