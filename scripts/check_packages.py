"""Check that pyproject.toml lists every package directory, so the wheel ships all of them.

setuptools is given an explicit package list, so a new sub-package must be added by hand; this
check, run by ``scripts/test.sh``, fails when one is missing or listed but gone.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("scheduling", "tenants")


def package_dirs() -> set[str]:
    """Return the dotted names of the directories with an ``__init__.py`` under SHIPPED."""
    found = set()
    for top in SHIPPED:
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = set(config.get("package-dir", {}))
    missing = sorted(package_dirs() - listed)
    stale = sorted(
        name
        for name in listed - mapped
        if not (ROOT / name.replace(".", "/") / "__init__.py").is_file()
    )
    for name in missing:
        print(f"pyproject.toml: package {name} is not in [tool.setuptools] packages")
    for name in stale:
        print(f"pyproject.toml: listed package {name} has no __init__.py")
    for name in sorted(mapped):
        if not (ROOT / config["package-dir"][name]).is_dir():
            print(f"pyproject.toml: package-dir of {name} does not exist")
            stale.append(name)
    if missing or stale:
        return 1
    print(f"{len(listed)} packages listed, all present.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
