"""``conf`` reads each setting once, and anew after ``override_settings`` changed it."""

from __future__ import annotations

from unittest import mock

from django.conf import settings as django_settings
from django.test import override_settings

from scheduling.conf import conf


def test_a_setting_is_read_once_then_kept(settings):
    settings.SCHEDULING_DEFAULT_TIMEOUT = 123
    assert conf.DEFAULT_TIMEOUT == 123
    with mock.patch.object(type(django_settings), "__getattr__") as lookup:
        for _ in range(3):
            assert conf.DEFAULT_TIMEOUT == 123
    lookup.assert_not_called()


def test_changed_settings_are_read_anew():
    before = conf.DEFAULT_TIMEOUT
    with override_settings(SCHEDULING_DEFAULT_TIMEOUT=before + 7, SCHEDULING_EXECUTOR="process"):
        inside = conf.DEFAULT_TIMEOUT, conf.EXECUTOR
    after = conf.DEFAULT_TIMEOUT, conf.EXECUTOR
    assert inside == (before + 7, "process")
    assert after == (before, "thread")


def test_a_deleted_setting_falls_back_to_its_default(settings):
    settings.SCHEDULING_LEASE_NAME = "mine"
    assert conf.LEASE_NAME == "mine"
    del settings.SCHEDULING_LEASE_NAME
    assert conf.LEASE_NAME == "default"
