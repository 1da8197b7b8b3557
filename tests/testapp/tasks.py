"""``django.tasks`` tasks of the test app (the backport on Django 5.2), registered as task types
in its ``scheduling_tasks``."""

from __future__ import annotations

import asyncio

try:
    from django.tasks import task  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # Django < 6.0: the django-tasks backport
    from django_tasks import task


@task()
def refresh_feed(url: str, limit: int = 10) -> dict:
    return {"url": url, "limit": limit}


@task()
async def shout(url: str, limit: int = 10) -> str:
    await asyncio.sleep(0)
    return url.upper() * limit
