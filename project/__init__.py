"""The demo project. Its Celery app loads with Django when Celery is installed (an extra)."""

from importlib.util import find_spec

if find_spec("celery") is not None:
    from project.celery import app as celery_app

    __all__ = ("celery_app",)
