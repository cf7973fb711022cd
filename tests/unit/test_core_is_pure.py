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


def imported_top_level_modules(source: str) -> set[str]:
    """Top-level names of every absolute import, at any depth (functions, if-blocks too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
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
        ("from store.uow import SqlUnitOfWork", {"store"}),
        ("def f():\n    from connectors.base import send\n", {"connectors"}),
        ("if True:\n    import fastapi\n", {"fastapi"}),
        ("from . import money", set()),
        ("from .money import Money", set()),
        ("from core.money import Money", {"core"}),
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
