"""The wheel installs one top-level name, `refundbridge`, and everything the layers need at
run time (templates, migrations, the docs pages' assets) inside it.

Built offline from this checkout with the venv's own setuptools (no build isolation, so
nothing is fetched).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=240)
    (built,) = out.glob("refundbridge-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_one_top_level_name(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()
           if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"refundbridge"}
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(info).decode().split() == ["refundbridge"]


def test_every_layer_and_its_files_are_inside_it(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for layer in ("api", "config", "connectors", "core", "store", "workers"):
        assert f"refundbridge/{layer}/__init__.py" in names
    assert "refundbridge/store/migrations/versions/0001_initial_schema.py" in names
    assert "refundbridge/store/migrations/script.py.mako" in names
    assert "refundbridge/connectors/smtp/templates/zh-CN/approved.txt.j2" in names
    assert "refundbridge/api/static/swagger-ui-bundle.js" in names


def test_the_connectors_are_registered_under_the_package(wheel: zipfile.ZipFile) -> None:
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    lines = [line for line in wheel.read(info).decode().splitlines() if " = " in line]
    plugins = dict(line.split(" = ", 1) for line in lines)
    assert plugins["stripe"] == "refundbridge.connectors.stripe:StripeConnector"
    assert all(target.startswith("refundbridge.") for target in plugins.values())
