"""The layout's rules, read from the imports, so a change that breaks one fails CI.

- ``pipeline/`` knows no storage, jobs, web or command line;
- the pure steps do no I/O: no HTTP, database, Google or Flask library;
- ``store/`` knows no jobs, web or command line; ``jobs/`` no web or command line;
- no import cycles, counting imports inside functions too;
- ``sheets_sync`` reaches Flask (and ``web``) only from the command that starts the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = (
    "sheets_sync.pipeline.report",
    "sheets_sync.pipeline.render",
    "sheets_sync.pipeline.notes",
    "sheets_sync.pipeline.history",
    "sheets_sync.pipeline.winners",
    "sheets_sync.pipeline.totals_check",
    "sheets_sync.pipeline.revision",
    "sheets_sync.pipeline.request_body",
    "sheets_sync.pipeline.instantly_models",
    "sheets_sync.schedules",
    "sheets_sync.connection_rules",
    "sheets_sync.date_ranges",
    "sheets_sync.links",
)
IO_LIBRARIES = (
    "requests", "urllib3", "http", "socket", "gspread", "google", "sqlalchemy", "psycopg",
    "alembic", "flask", "werkzeug", "smtplib", "subprocess",
)
SERVER_COMMAND = "sheets_sync.cli.serve"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {
        module_name(p): p
        for top in ("sheets_sync", "web")
        for p in (ROOT / top).rglob("*.py")
        if "migrations" not in p.parts
    }


MODULES = sources()


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, anywhere in its body (absolute dotted names)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{a.name}" for a in node.names} & MODULES.keys()
            # "from package import module" imports that module; anything else, the base.
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return found


def internal_imports(name: str) -> set[str]:
    return {m for m in imports_of(name) if m in MODULES and m != name}


def in_layer(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("sheets_sync.pipeline", ("sheets_sync.store", "sheets_sync.jobs", "sheets_sync.cli",
                                  "web")),
        ("sheets_sync.store", ("sheets_sync.jobs", "sheets_sync.cli", "web")),
        ("sheets_sync.jobs", ("sheets_sync.cli", "web")),
    ],
)
def test_layers_import_only_downwards(layer: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name in MODULES if in_layer(name, layer)
        for target in imports_of(name)
        if any(in_layer(target, f) for f in forbidden)
    )
    assert not wrong


@pytest.mark.parametrize("name", PURE)
def test_pure_steps_do_no_io(name: str) -> None:
    assert name in MODULES, f"{name} moved: update the layout rules"
    wrong = sorted(
        target for target in imports_of(name)
        if target.split(".")[0] in IO_LIBRARIES
        or (target in MODULES and target not in PURE and not _pure_support(target))
    )
    assert not wrong


def _pure_support(name: str) -> bool:
    # Plain data and messages the pure steps may share.
    return name in ("sheets_sync", "sheets_sync.errors", "sheets_sync.pipeline")


def test_only_the_server_command_reaches_flask() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name in MODULES if in_layer(name, "sheets_sync") and name != SERVER_COMMAND
        for target in imports_of(name)
        if target.split(".")[0] in ("flask", "flask_login", "flask_wtf", "web")
    )
    assert not wrong


def test_there_are_no_import_cycles() -> None:
    graph = {name: internal_imports(name) for name in MODULES}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
