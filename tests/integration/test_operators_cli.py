"""`refundbridge operators`: accounts made on the command line, the password never an
argument, and what the console then lets each do."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from refundbridge.cli import app as cli
from refundbridge.core.access import OperatorRole
from refundbridge.store.db import make_engine
from refundbridge.store.operators import SqlOperatorDirectory
from tests.factories import SHOP, config_toml

PASSWORD = "a long enough password"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    path = tmp_path / "refundbridge.toml"
    path.write_text(config_toml(f"sqlite:///{tmp_path / 'refundbridge.db'}"), encoding="utf-8")
    assert CliRunner().invoke(cli, ["db", "upgrade", "--config", str(path)]).exit_code == 0
    return path


def _directory(tmp_path: Path) -> SqlOperatorDirectory:
    return SqlOperatorDirectory(make_engine(f"sqlite:///{tmp_path / 'refundbridge.db'}"))


def run(config: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["operators", *args, "--config", str(config)],
                                input=stdin)
    return result.exit_code, result.output


def test_add_list_disable_enable_and_reset(config: Path, tmp_path: Path) -> None:
    code, out = run(config, "add", "li.na", "--role", "reviewer", "--shop", SHOP,
                    stdin=PASSWORD + "\n")
    assert code == 0 and f"added reviewer li.na for {SHOP}" in out
    assert _directory(tmp_path).authenticate("li.na", PASSWORD) is not None
    secret = tmp_path / "pw.txt"
    secret.write_text("another good password\n", encoding="utf-8")
    code, _ = run(config, "add", "root", "--role", "admin", "--password-file", str(secret))
    assert code == 0
    code, out = run(config, "list")
    assert code == 0
    assert "li.na\treviewer\tacme-medical\tactive" in out
    assert "root\tadmin\tevery shop\tactive" in out

    code, out = run(config, "disable", "li.na")
    assert code == 0 and "sessions have ended" in out
    assert _directory(tmp_path).authenticate("li.na", PASSWORD) is None
    assert "li.na\treviewer\tacme-medical\tdisabled" in run(config, "list")[1]
    assert run(config, "enable", "li.na")[0] == 0
    assert _directory(tmp_path).authenticate("li.na", PASSWORD) is not None

    code, _ = run(config, "reset-password", "li.na", stdin="the new password!\n")
    assert code == 0
    assert _directory(tmp_path).authenticate("li.na", PASSWORD) is None
    principal = _directory(tmp_path).authenticate("li.na", "the new password!")
    assert principal is not None and principal.role is OperatorRole.REVIEWER
    assert principal.shops == frozenset({SHOP})


@pytest.mark.parametrize(("args", "stdin", "says"), [
    (["add", "li.na", "--role", "reviewer", "--shop", "nowhere"], PASSWORD, "no shop nowhere"),
    (["add", "li.na", "--role", "reviewer"], PASSWORD, "needs at least one shop"),
    (["add", "li.na", "--role", "reviewer", "--shop", SHOP], "short", "at least 10"),
    (["add", "l i", "--role", "reviewer", "--shop", SHOP], PASSWORD, "letters, digits"),
    (["disable", "nobody"], None, "no operator 'nobody'"),
    (["reset-password", "nobody"], PASSWORD, "no operator 'nobody'"),
])
def test_refusals_exit_2_and_say_why(config: Path, tmp_path: Path, args: list[str],
                                     stdin: str | None, says: str) -> None:
    code, out = run(config, *args, stdin=None if stdin is None else stdin + "\n")
    assert code == 2 and says in out
    assert _directory(tmp_path).accounts() == []


def test_a_role_that_does_not_exist_is_refused_by_the_option(config: Path) -> None:
    code, out = run(config, "add", "li.na", "--role", "boss", "--shop", SHOP, stdin=PASSWORD)
    assert code == 2 and "boss" in out
