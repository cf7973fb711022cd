"""compose.yaml, the Dockerfile and requirements.lock, checked without a Docker engine: every
mounted file is in the repo, every healthcheck is one its service can pass, the shipped
settings load, and every package the image installs is pinned."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.main import get_command

from refundbridge.bootstrap import check_settings
from refundbridge.cli import app as cli
from refundbridge.config.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = sorted(name for name, s in SERVICES.items() if s.get("build") == ".")
# What the third-party images ship that a healthcheck may call.
IMAGE_TOOLS = {"postgres": {"pg_isready"}, "redis": {"redis-cli"}}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}`, as a fresh clone with nothing set sees it."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def _argv(test: list[str] | str) -> list[str]:
    if isinstance(test, str):
        return shlex.split(test)
    assert test[0] in {"CMD", "CMD-SHELL"}, test
    return test[1:] if test[0] == "CMD" else shlex.split(test[1])


def _refundbridge_accepts(args: list[str]) -> None:
    """The CLI parses these arguments: the command and its options exist."""
    group = get_command(cli)
    ctx = group.make_context("refundbridge", list(args))
    command = group.get_command(ctx, args[0])  # type: ignore[attr-defined]
    assert command is not None, f"refundbridge has no command {args[0]!r}"
    command.make_context(args[0], list(args[1:]), parent=ctx)


def test_the_app_services_are_found() -> None:
    assert APP_SERVICES == ["api", "migrate", "worker"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_mounted_file_is_in_the_repo_and_tracked(service: str) -> None:
    for volume in SERVICES[service].get("volumes", []):
        source = _interpolate(volume).split(":", 1)[0]
        if not source.startswith("."):
            continue  # a named volume
        path = ROOT / source
        assert path.is_file(), f"{service} mounts {source}, which is not in the repo"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT,
                                 check=False)
        assert ignored.returncode == 1, f"{source} is git-ignored, so a clone lacks it"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_healthcheck_is_one_its_service_can_pass(service: str) -> None:
    spec = SERVICES[service]
    check = spec.get("healthcheck")
    if service in APP_SERVICES:
        # The image's own HEALTHCHECK polls the API's port: only the API may inherit it.
        assert check is not None, f"{service} would inherit the image's HTTP healthcheck"
    if check is None or check.get("disable"):
        assert service != "api" and service != "worker", f"{service} needs a healthcheck"
        return
    argv = _argv(check["test"])
    if service in APP_SERVICES:
        command = spec["command"]
        assert command[0] == "refundbridge"
        _refundbridge_accepts(command[1:])
        if argv[0] == "refundbridge":
            _refundbridge_accepts(argv[1:])
        else:
            assert argv[:2] == ["python", "-c"], argv
            compile(argv[2], f"<{service} healthcheck>", "exec")
            # An HTTP check must poll the port this service serves.
            port = command[command.index("--port") + 1]
            assert f"127.0.0.1:{port}/" in argv[2], (service, argv)
        if command[1] != "serve":
            assert "http" not in " ".join(argv), f"{service} serves no HTTP: {argv}"
    else:
        image = spec["image"].split(":")[0]
        assert argv[0] in IMAGE_TOOLS[image], (service, argv)


def test_the_worker_healthcheck_asks_for_a_live_worker() -> None:
    assert _argv(SERVICES["worker"]["healthcheck"]["test"]) == ["refundbridge", "check",
                                                                 "--worker"]


def test_the_shipped_compose_settings_load_and_pass_the_start_up_checks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    environment = {k: _interpolate(str(v)) for k, v in
                   COMPOSE["x-app"]["environment"].items() if k != "REFUNDBRIDGE_CONFIG"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    mount = _interpolate(COMPOSE["x-app"]["volumes"][0]).split(":")[0]
    settings = load_settings(ROOT / mount)
    check_settings(settings)  # placeholders and every shop's connectors, as a start would
    assert settings.database_url.startswith("postgresql://")
    assert settings.redis_url == "redis://redis:6379/0"
    for shop in settings.shops.values():
        assert all(name.startswith(("sandbox_", "generic"))
                   for name in shop.connectors_by_role().values()), shop


def test_the_dockerfile_installs_with_the_lock_and_copies_what_exists() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), line
    installs = re.findall(r"pip (?:install|wheel)[^\n]*(?:\\\n[^\n]*)*", dockerfile)
    assert installs and all("-c " in step for step in installs), installs


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def _runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_the_lock_pins_every_package_the_image_installs() -> None:
    """Walks the runtime requirements (with their extras) through the installed metadata."""
    pins = _lock()
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in _runtime_requirements()]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock does not pin {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement}: "
            "run `make lock`")
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            declared = requires(requirement.name) or []
        except PackageNotFoundError:
            continue  # not installed here: its pin is all we can check
        for text in declared:
            child = Requirement(text)
            if child.marker is None or any(
                    child.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                todo.append((child, frozenset(child.extras)))
    assert len(seen) > 40  # the walk reached the transitive dependencies
