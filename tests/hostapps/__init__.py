"""Host projects on tenancy packages (django-scopes, django-multitenant, django-organizations).

Each has its own settings module (``settings_<package>.py``), installed only there; the tests in
``tests/scheduling/integrations/`` migrate one into a scratch database and drive it through
``manage.py`` in subprocesses (``project.HostProject``).
"""
