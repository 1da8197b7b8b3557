"""The app's templates and static files ship inside the package, for any kind of install.

A host project finds them through its ``APP_DIRS`` loader and ``collectstatic``: nothing may
depend on the demo project's own template directories, and the wheel must carry them all.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from django.conf import settings
from django.template.loader import get_template
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_TEMPLATES = ROOT / "scheduling" / "templates"
# The project's template settings without its own directories: the app's loader alone.
APP_DIRS_ONLY = [{**settings.TEMPLATES[0], "DIRS": [], "APP_DIRS": True}]


def template_names() -> list[str]:
    return sorted(
        path.relative_to(PACKAGE_TEMPLATES).as_posix() for path in PACKAGE_TEMPLATES.rglob("*.html")
    )


@override_settings(TEMPLATES=APP_DIRS_ONLY)
def test_every_template_is_found_by_the_app_directories_loader_alone():
    names = template_names()
    assert "admin/scheduling/dashboard.html" in names
    assert "scheduling/reports/base.html" in names
    for name in names:
        if name == "admin/index.html":
            continue  # Django's own wins unless scheduling is listed first (check W004)
        origin = Path(get_template(name).origin.name)
        assert origin.is_relative_to(PACKAGE_TEMPLATES), (name, origin)


def test_the_wheel_carries_the_templates_and_static_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for name in template_names():
        assert f"scheduling/templates/{name}" in shipped, name
    static = ROOT / "scheduling" / "static"
    for path in static.rglob("*"):
        if path.is_file():
            assert f"scheduling/{path.relative_to(ROOT / 'scheduling').as_posix()}" in shipped
    assert "scheduling/migrations/0007_execution_counters.py" in shipped
    assert "scheduling/templatetags/scheduling_tenants.py" in shipped
    assert "tenants/templates/admin/tenants/tenant/change_form.html" in shipped
