"""Rate limits of the API, per user, with rates from ``SCHEDULING_API_THROTTLE_RATES``.

Two scopes: ``scheduling`` counts every request to the API; ``scheduling_run`` also counts
the actions that make the scheduler do something (run, pause, resume, enable, disable, cancel,
retry), with a stricter default. The rates are read at each request (DRF's own throttles read
``DEFAULT_THROTTLE_RATES`` once, at import), so the project's ``REST_FRAMEWORK`` settings stay
untouched and ``override_settings`` works.

The request history lives in Django's ``default`` cache. The default ``LocMemCache`` is per
process: with several web processes each counts on its own, so a user gets the rate once per
process. Point ``CACHES["default"]`` at a shared cache (Redis, Memcached, the database) to
enforce the limits across processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.throttling import SimpleRateThrottle

from ..conf import conf

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

# The view actions the ``scheduling_run`` scope limits (viewset action names).
RUN_ACTIONS = frozenset({"run", "pause", "resume", "enable", "disable", "cancel", "retry"})


class SchedulingRateThrottle(SimpleRateThrottle):
    """Every request of a user (or an address, if anonymous) to the API."""

    scope = "scheduling"

    def get_rate(self) -> str | None:
        return conf.API_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        user = request.user
        ident = user.pk if user and user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SchedulingRunRateThrottle(SchedulingRateThrottle):
    """The actions that queue or change work (``RUN_ACTIONS``), on top of the general rate."""

    scope = "scheduling_run"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if getattr(view, "action", None) not in RUN_ACTIONS:
            return None  # not throttled by this scope
        return super().get_cache_key(request, view)
