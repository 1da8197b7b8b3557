"""The entry point of the ``process`` executor's children (imported before Django is set up).

A spawned child imports this module to find its target, in a fresh interpreter where Django
is not configured yet: nothing here may import models at module level. The child inherits the
parent's environment, ``DJANGO_SETTINGS_MODULE`` included (system check ``scheduling.E037``).
"""

from __future__ import annotations


def run_execution(execution_id: int) -> None:
    """Set Django up from the inherited settings module, then run ``execution_id``."""
    import django

    django.setup()
    from scheduling import runner

    runner.execute(execution_id)
