"""The core imports no framework, client, queue or SQL driver, and no adapter of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"

FORBIDDEN = frozenset({
    # frameworks, clients, queues, SQL
    "fastapi", "starlette", "httpx", "redis", "rq", "sqlalchemy", "psycopg", "alembic",
    "uvicorn",
    # our own adapters and entry points
    "connectors", "store", "workers", "api", "refundbridge",
})

CORE_FILES = sorted(CORE.rglob("*.py"))


LAYERS = frozenset({"api", "config", "connectors", "core", "store", "workers"})


def _layer(module: str) -> str:
    """`refundbridge.store.uow` -> `store`; `refundbridge.bootstrap` -> `refundbridge` (the
    composition root and the commands); anything else -> its top-level name."""
    parts = module.split(".")
    if parts[0] == "refundbridge" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return parts[0]


def imported_top_level_modules(source: str) -> set[str]:
    """The layer or top-level package of every absolute import, at any depth (functions,
    if-blocks too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(_layer(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(_layer(node.module))
    return names


def test_core_has_python_files() -> None:
    assert {str(p.relative_to(CORE)) for p in CORE_FILES} >= {
        "money.py", "model.py", "lifecycle.py", "services/__init__.py", "services/money.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_nothing_forbidden(path: Path) -> None:
    imported = imported_top_level_modules(path.read_text(encoding="utf-8"))
    assert imported & FORBIDDEN == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import httpx", {"httpx"}),
        ("import sqlalchemy.orm as orm", {"sqlalchemy"}),
        ("import os, redis", {"os", "redis"}),
        ("from rq import Queue", {"rq"}),
        ("from refundbridge.store.uow import SqlUnitOfWork", {"store"}),
        ("def f():\n    from refundbridge.connectors.base import send\n", {"connectors"}),
        ("from refundbridge.bootstrap import bootstrap", {"refundbridge"}),
        ("import refundbridge.core.ports", {"core"}),
        ("if True:\n    import fastapi\n", {"fastapi"}),
        ("from . import money", set()),
        ("from .money import Money", set()),
        ("from refundbridge.core.money import Money", {"core"}),
    ],
)
def test_the_import_scanner_sees_every_form(source: str, expected: set[str]) -> None:
    assert imported_top_level_modules(source) == expected


def test_relative_imports_in_core_stay_in_core() -> None:
    for path in CORE_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                depth = len(path.relative_to(CORE).parts) - 1
                assert node.level <= depth + 1, f"{path}: relative import leaves core/"
