"""Which layer may import which, beyond the core's purity (`test_core_is_pure.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.test_core_is_pure import LAYERS, imported_top_level_modules

ROOT = Path(__file__).resolve().parents[2]

# folder -> top-level modules none of its files may import
RULES = {
    # Workers run steps and hand work to the queue; every query is the store's, and what
    # they need of the process comes through `workers.deps`, not the composition root.
    "workers": frozenset({"sqlalchemy", "psycopg", "refundbridge", "api"}),
    # Routes translate HTTP: what they need comes through `api.deps`, not the composition
    # root, and no provider package is theirs to know; the database only through the store.
    "api": frozenset({"refundbridge", "connectors", "workers", "sqlalchemy", "psycopg"}),
    # The store and the connectors are adapters: they know the core, not the queue or the web.
    "store": frozenset({"fastapi", "starlette", "rq", "redis", "workers", "api", "connectors"}),
    "connectors": frozenset({"fastapi", "starlette", "rq", "sqlalchemy", "store", "workers",
                             "api"}),
}

FILES = [(folder, path) for folder in RULES for path in sorted((ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize(("folder", "path"), FILES,
                         ids=[str(p.relative_to(ROOT)) for _, p in FILES])
def test_a_layer_imports_only_what_it_may(folder: str, path: Path) -> None:
    imported = imported_top_level_modules(path.read_text(encoding="utf-8"))
    assert imported & RULES[folder] == set()


# Every Python file of the repository once (`refundbridge/core` and the like are links to the
# layers at the top, not more files).
SOURCES = sorted(
    p for p in ROOT.rglob("*.py")
    if not {".venv", "build"} & set(p.relative_to(ROOT).parts)
    and not any((ROOT / parent).is_symlink() for parent in p.relative_to(ROOT).parents))


def _bare_layer_imports(source: str) -> set[str]:
    bare: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                 and node.module else [])
        bare.update(name for name in names if name.split(".")[0] in LAYERS)
    return bare


def test_every_import_names_the_one_installed_package() -> None:
    """`core.model` and `refundbridge.core.model` would be two modules with two copies of
    every class: everything imports the layers under `refundbridge`, the one top-level name
    the wheel installs."""
    offenders = {str(p.relative_to(ROOT)): bare for p in SOURCES
                 if (bare := _bare_layer_imports(p.read_text(encoding="utf-8")))}
    assert offenders == {}
