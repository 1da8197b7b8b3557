"""Fixtures shared by the tests of the scheduler process's parts."""

from __future__ import annotations

import pytest

from scheduling.scheduler.jobstore import SignedDjangoJobStore
from scheduling.scheduler.loop import FencedScheduler
from scheduling.scheduler.recorder import Recorder


@pytest.fixture
def recorder():
    """``recorder(**kwargs)`` starts a ``Recorder``; every one is stopped afterwards."""
    made: list[Recorder] = []

    def make(**kwargs) -> Recorder:
        rec = Recorder(**kwargs)
        rec.begin()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.stop(timeout=5)


@pytest.fixture
def job_store(db):
    """A ``SignedDjangoJobStore`` added to a ``FencedScheduler`` that is never started."""
    scheduler = FencedScheduler(fence=lambda: True, timezone="UTC")
    store = SignedDjangoJobStore()
    scheduler.add_jobstore(store, "default")
    store._scheduler, store._alias = scheduler, "default"
    return store
