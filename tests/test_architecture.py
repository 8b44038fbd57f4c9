"""Imports run down the layers of docs/architecture.md, and no two modules import each other.

Every module of the apps is parsed (not imported): every ``import`` counts, also those inside
functions and ``if TYPE_CHECKING:`` blocks, because an import hidden in a function is still a
dependency. Tests, migrations, ``bench/``, ``scripts/`` and ``sdk/`` are exempt.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lower numbers are lower layers. A module may import its own app and any app of a lower layer.
LAYERS: dict[str, int] = {
    "core": 0,  # no domain models: Redis client, errors, request context, hot SQL, env helpers
    "accounts": 1,
    "billing": 2,
    "webhooks": 3,
    "generations": 4,
    # Peers: each uses generations' services and none imports another.
    "gallery": 5,
    "gpu_worker": 5,
    "ops": 5,
    "workflows": 5,
    "api": 6,  # the API edge: authentication, rate-limit headers, idempotency, versioning
    # Tooling over the worker: trains and judges the built-in model; only bench/ and tests use it.
    "demo_model": 6,
    "config": 7,  # settings, URLs, ASGI: the one place that wires everything together
}
NOT_APPS = {"tests", "bench", "scripts", "sdk", "docs", "static", "templates", "var", "staticfiles"}

# Imports between peers of one layer that were found to be needed (importer app, imported app),
# each with its reason. None so far.
ALLOWED_PEERS: set[tuple[str, str]] = set()


def app_packages() -> list[str]:
    return sorted(
        path.name
        for path in ROOT.iterdir()
        if path.is_dir() and (path / "__init__.py").exists() and path.name not in NOT_APPS
    )


@cache
def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the apps outside their migrations."""
    found: dict[str, Path] = {}
    for app in app_packages():
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.relative_to(ROOT).parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def resolve(name: str) -> str | None:
    """The app module an imported name lives in (``a.b.c`` may be module ``a.b``'s attribute c)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def imported_names(module: str, source: str, *, package: bool = False) -> Iterator[tuple[str, int]]:
    """Every name the source imports, absolute; ``package`` when it is an ``__init__.py``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno  # a submodule, or else an attribute of base


@cache
def edges() -> dict[str, dict[str, int]]:
    """Importing module -> {imported app module: first line}."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules().items():
        targets = graph.setdefault(module, {})
        for name, line in imported_names(module, path.read_text(), package=path.name == "__init__.py"):
            target = resolve(name)
            if target is not None and target != module:
                targets.setdefault(target, line)
    return graph


def app_of(module: str) -> str:
    return module.partition(".")[0]


def allowed(importer: str, imported: str) -> bool:
    a, b = app_of(importer), app_of(imported)
    if a == b:
        return True
    if LAYERS[a] == LAYERS[b]:
        return (a, b) in ALLOWED_PEERS
    return LAYERS[b] < LAYERS[a]


def violations() -> list[tuple[str, str, int]]:
    return [
        (importer, imported, line)
        for importer, targets in sorted(edges().items())
        for imported, line in sorted(targets.items())
        if not allowed(importer, imported)
    ]


def cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    graph = edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_every_app_has_a_layer() -> None:
    missing = [app for app in app_packages() if app not in LAYERS]
    assert not missing, f"give these packages a layer in LAYERS (and in docs/architecture.md): {missing}"


def test_it_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gallery.models import Like\n"
        "def f():\n    from gpu_worker import heartbeat\n    import ops.health\n"
        "from . import queues\nfrom .models import Generation\n"
    )
    names = {name for name, _ in imported_names("generations.probe", source)}
    assert {"gallery.models.Like", "gpu_worker.heartbeat", "ops.health", "generations.queues"} <= names
    assert "generations.models.Generation" in names


def test_imports_run_down_the_layers() -> None:
    found = {(importer, imported): line for importer, imported, line in violations()}
    unexpected = [
        f"{importer} (line {line}) imports {imported}" for (importer, imported), line in sorted(found.items())
    ]
    assert not unexpected, (
        "imports that run up or sideways (docs/architecture.md, 'Layers'): register the check in "
        "settings, or move the code to the layer that may import both:\n" + "\n".join(unexpected)
    )


def test_no_module_is_part_of_an_import_cycle() -> None:
    unexpected = [sorted(component) for component in cycles()]
    assert not unexpected, f"import cycles: {unexpected}"


def test_domain_apps_never_import_the_api_edge() -> None:
    domain = {app for app, layer in LAYERS.items() if layer < LAYERS["api"]}
    importers = sorted(
        importer
        for importer, targets in edges().items()
        if app_of(importer) in domain and any(app_of(t) == "api" for t in targets)
    )
    assert not importers
