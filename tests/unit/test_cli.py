"""The `refundbridge` command's answers to bad input: exit 2, naming the key or field."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refundbridge.cli import app as cli
from tests.factories import request_body


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("REFUNDBRIDGE_"):
            monkeypatch.delenv(name)
    yield


def test_a_placeholder_connector_secret_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "refundbridge.toml"
    config.write_text(f"""
database_url = "sqlite:///{tmp_path / 'rb.db'}"
[shops.acme]
payment = "sandbox_payment"
erp = "sandbox_erp"
notifier = "sandbox_notifier"
[shops.acme.generic]
secret = "changeme"
""", encoding="utf-8")
    for command in (["recalls", "list", "--shop", "acme"], ["reconcile"]):
        result = CliRunner().invoke(cli, [*command, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert "shops.acme.generic.secret" in result.output


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"request": request_body(), "inspections": [{"seal_intact": True,
                                                       "condition": "as_new",
                                                       "inspector": "qa"}]},
         "inspections.0.line"),
        ({"request": request_body(**{"lines.0.quantity": 0})}, "request.lines.0.quantity"),
        ({"request": request_body(), "inspection": []}, "inspection"),
        ('{"request": ', "body"),
    ],
    ids=["inspection", "wrapped-request", "unknown-key", "malformed"],
)
def test_evaluate_names_the_bad_field(tmp_path: Path, document: object, field: str) -> None:
    case_file = tmp_path / "case.json"
    case_file.write_text(document if isinstance(document, str) else json.dumps(document),
                         encoding="utf-8")
    result = CliRunner().invoke(cli, ["evaluate", str(case_file)])
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.output
