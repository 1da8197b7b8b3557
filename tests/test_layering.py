"""The architecture, kept by a test: no import cycles, and dependencies point one way.

Every ``import`` of the ``scheduling`` and ``tenants`` packages is read from the source, at
module level and inside functions alike (a function-level import only postpones a cycle; it
does not remove it), and also under ``if TYPE_CHECKING:`` for the layer rule. Each module
belongs to a layer; a module may import its own layer and the layers below it:

    wiring    apps, checks, migrations            (registers everything)
    edges     admin/, api/, cli/, schedules_io/, management/, monitoring, urls, templatetags/,
              tenants.admin
    process   scheduler/, executors/, tasks       (the ``runscheduler`` process and its workers)
    work      runner, logs, pings, kinds/, alerts/, builtin/   (what one execution does)
    domain    models, triggers, registry, tenancy, services, ...
    base      conf, exceptions, signals, validators, context

DRF is imported only in ``scheduling/api/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scheduling", "tenants")

BASE, DOMAIN, WORK, PROCESS, EDGES, WIRING = range(6)
LAYER_NAMES = ["base", "domain", "work", "process", "edges", "wiring"]

# The layer of a module: the longest matching name prefix wins.
LAYERS = {
    "scheduling.conf": BASE,
    "scheduling.exceptions": BASE,
    "scheduling.signals": BASE,
    "scheduling.validators": BASE,
    "scheduling.context": BASE,
    "scheduling": DOMAIN,
    "tenants": DOMAIN,
    "scheduling.runner": WORK,
    "scheduling.outcomes": WORK,
    "scheduling.logs": WORK,
    "scheduling.pings": WORK,
    "scheduling.integrations.sentry": WORK,
    "scheduling.integrations.otel": WORK,
    "scheduling.kinds": WORK,
    "scheduling.alerts": WORK,
    "scheduling.builtin": WORK,
    "scheduling.scheduling_tasks": WORK,
    "scheduling.scheduler": PROCESS,
    "scheduling.executors": PROCESS,
    "scheduling.tasks": PROCESS,
    "scheduling.admin": EDGES,
    "scheduling.api": EDGES,
    "scheduling.cli": EDGES,
    "scheduling.schedules_io": EDGES,
    "scheduling.management": EDGES,
    "scheduling.monitoring": EDGES,
    "scheduling.urls": EDGES,
    "scheduling.templatetags": EDGES,
    "tenants.admin": EDGES,
    "scheduling.apps": WIRING,
    "scheduling.checks": WIRING,
    "scheduling.migrations": WIRING,
    "tenants.apps": WIRING,
    "tenants.migrations": WIRING,
}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(child) for child in ast.walk(node))
    return hidden


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """Return ``(imported module, at run time)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    hidden = _type_checking_nodes(tree)
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        runtime = id(node) not in hidden
        if isinstance(node, ast.Import):
            found += [(alias.name, runtime) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from . import runner`` imports the module ``scheduling.runner``.
                child = f"{target}.{alias.name}"
                found.append((child if child in known else target, runtime))
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    """Return the run-time graph, the graph with TYPE_CHECKING imports, and outside imports."""
    modules = source_modules()
    known = set(modules)
    runtime: dict[str, set[str]] = {name: set() for name in modules}
    typed: dict[str, set[str]] = {name: set() for name in modules}
    outside: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, at_runtime in imports_of(name, path, known):
            if target in known:
                if target != name:
                    typed[name].add(target)
                    if at_runtime:
                        runtime[name].add(target)
            else:
                outside[name].add(target)
    return runtime, typed, outside


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_packages_have_no_import_cycle():
    runtime, _typed, _outside = import_graph()
    cycles = strongly_connected(runtime)
    assert not cycles, "Import cycles (function-level imports count):\n" + "\n".join(
        " <-> ".join(component) for component in cycles
    )


def test_every_module_imports_only_its_own_layer_and_the_ones_below():
    _runtime, typed, _outside = import_graph()
    upward = sorted(
        f"{module} ({LAYER_NAMES[layer_of(module)]}) imports {target} "
        f"({LAYER_NAMES[layer_of(target)]})"
        for module, targets in typed.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )
    assert not upward, "Imports that point up the layers:\n" + "\n".join(upward)


def test_only_the_api_package_imports_drf():
    _runtime, _typed, outside = import_graph()
    drf = sorted(
        module
        for module, targets in outside.items()
        if not module.startswith("scheduling.api")
        and any(t == "rest_framework" or t.startswith("rest_framework.") for t in targets)
    )
    assert not drf, f"DRF imported outside scheduling/api/: {drf}"


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert sorted(strongly_connected(edges)) == expected


def test_function_level_and_relative_imports_are_read(tmp_path):
    package = tmp_path / "scheduling"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "runner.py"
    source.write_text(
        "from . import models\n"
        "def f():\n"
        "    from .scheduler.sync import JobSync\n"
        "    import scheduling.cli\n"
    )
    known = {"scheduling", "scheduling.runner", "scheduling.models", "scheduling.scheduler.sync"}
    found = imports_of("scheduling.runner", source, known)
    assert ("scheduling.models", True) in found
    assert ("scheduling.scheduler.sync", True) in found
    assert ("scheduling.cli", True) in found
