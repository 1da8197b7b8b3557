"""Scan types the tests use; registered through the app's autodiscovery like a host app's."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from asgiref.sync import sync_to_async
from django import forms

from scheduling.models import Schedule
from scheduling.registry import register_task, scan_type, task_type

from .tasks import refresh_feed, shout


class SleepOptions(forms.Form):
    seconds = forms.FloatField(min_value=0, max_value=3600, required=False, initial=0)
    fail = forms.BooleanField(required=False)
    record = forms.CharField(required=False, help_text="append a line to this file")


@scan_type("test_sleep", label="Test: sleep", options=SleepOptions)
def sleep_scan(scan, context) -> dict:
    options = scan.options or {}
    if options.get("record"):
        with Path(options["record"]).open("a") as handle:
            handle.write(f"{scan.pk} {context.scheduled_for.isoformat()}\n")
    time.sleep(float(options.get("seconds") or 0))
    if options.get("fail"):
        raise RuntimeError(f"{scan.name} failed on purpose")
    return {"slept": options.get("seconds") or 0, "target": scan.target}


@scan_type("test_echo", label="Test: echo")
def echo_scan(scan, context) -> dict:
    return {"name": scan.name, "attempt": context.execution.attempt}


class SlowFirstAttemptOptions(forms.Form):
    seconds = forms.FloatField(min_value=0, max_value=3600, required=False, initial=0)


@scan_type(
    "test_slow_first_attempt", label="Test: slow first attempt", options=SlowFirstAttemptOptions
)
def slow_first_attempt_scan(scan, context) -> dict:
    """Sleep ``seconds`` on the first attempt only: a retry finishes at once."""
    if context.execution.attempt == 1:
        time.sleep(float((scan.options or {}).get("seconds") or 0))
    return {"attempt": context.execution.attempt}


# -- task types (ScheduledTask) ----------------------------------------------------------------


class AddOptions(forms.Form):
    a = forms.IntegerField()
    b = forms.IntegerField(required=False, initial=0)


@task_type("test_add", label="Test: add", options=AddOptions)
def add_task(task, context) -> dict:
    return {
        "sum": task.options["a"] + (task.options.get("b") or 0),
        "tenant": context.tenant.pk if context.tenant is not None else None,
        "options": context.options,
    }


class AsyncOptions(forms.Form):
    seconds = forms.FloatField(min_value=0, max_value=3600, required=False, initial=0)
    marker = forms.CharField(required=False, help_text="written when the coroutine is cancelled")
    count_schedules = forms.BooleanField(required=False)


@task_type("test_async", label="Test: async", options=AsyncOptions)
async def async_task(task, context) -> dict:
    options = task.options
    try:
        await asyncio.sleep(float(options.get("seconds") or 0))
    except asyncio.CancelledError:
        if options.get("marker"):
            Path(options["marker"]).write_text("cancelled")
        raise
    result: dict = {"slept": options.get("seconds") or 0}
    if options.get("count_schedules"):
        result["schedules"] = await sync_to_async(Schedule.objects.count)()
    return result


class PollOptions(forms.Form):
    seconds = forms.FloatField(min_value=0, max_value=3600, required=False, initial=30)
    started = forms.CharField(required=False, help_text="written once the handler runs")


@task_type("test_until_cancelled", label="Test: run until cancelled", options=PollOptions)
def until_cancelled(task, context) -> dict:
    if task.options.get("started"):
        Path(task.options["started"]).write_text("started")
    deadline = time.monotonic() + float(task.options.get("seconds") or 0)
    while time.monotonic() < deadline:
        if context.cancelled:
            return {"stopped": "cancelled"}
        time.sleep(0.05)
    return {"stopped": "deadline"}


# -- django.tasks tasks registered as task types --------------------------------------------


class RefreshOptions(forms.Form):
    url = forms.CharField()
    limit = forms.IntegerField(required=False, min_value=1, initial=10)


register_task(
    refresh_feed, key="test_refresh_feed", label="Test: refresh feed", options=RefreshOptions
)
register_task(shout, key="test_shout", options=RefreshOptions)


# -- a task type that does not poll: only terminating its process stops it ---------------------


class BlockOptions(forms.Form):
    seconds = forms.FloatField(min_value=0, max_value=3600, required=False, initial=30)
    started = forms.CharField(required=False, help_text="the handler's pid, written as it starts")
    finished = forms.CharField(required=False, help_text="written if the handler gets to its end")


@task_type("test_block", label="Test: block without polling", options=BlockOptions)
def block(task, context) -> dict:
    """Sleep in one call, never looking at ``context.cancelled``: only killing it stops it."""
    import os

    if task.options.get("started"):
        Path(task.options["started"]).write_text(str(os.getpid()))
    time.sleep(float(task.options.get("seconds") or 0))
    if task.options.get("finished"):
        Path(task.options["finished"]).write_text("finished")
    return {"slept": task.options.get("seconds") or 0}
