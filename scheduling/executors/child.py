"""The entry point of the ``process`` executor's children (imported before Django is set up).

A spawned child imports this module to find its target, in a fresh interpreter where Django
is not configured yet: nothing here may import models at module level.
"""

from __future__ import annotations

import os


def run_execution(execution_id: int, settings_module: str) -> None:
    """Set Django up with the parent's settings module, then run ``execution_id``."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    from scheduling import runner

    runner.execute(execution_id)
