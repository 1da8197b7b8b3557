"""Scan types the tests use; registered through the app's autodiscovery like a host app's."""

from __future__ import annotations

import time
from pathlib import Path

from django import forms

from scheduling.registry import scan_type


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
