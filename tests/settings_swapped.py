"""Test settings of a host project that brings its own tenant model."""

from tests.settings import *  # noqa: F403

SCHEDULING_TENANT_MODEL = "testapp.Organization"
