"""`refundbridge recalls campaign open | list | show`: the CLI opens a campaign (the workers
do the rest), a second open changes nothing, and bad options name themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refundbridge.bootstrap import Container
from refundbridge.cli import app as cli
from tests.conftest import drain
from tests.factories import SHOP, config_toml
from tests.integration.conftest import SECRET
from tests.integration.test_recall_campaigns import shipments


@pytest.fixture
def config(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    path = tmp_path / "refundbridge.toml"
    path.write_text(config_toml(database_url, header=f'status_link_secret = "{SECRET}"'),
                    encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["recalls", "campaign", *args])
    return result.exit_code, result.output


def test_open_then_show_and_list(campaign_container: Callable[..., Container],
                                 config: Path, tmp_path: Path) -> None:
    container = campaign_container(shipments(7))
    instructions = tmp_path / "notice.txt"
    instructions.write_text("停止使用并退回。Stop use and return.", encoding="utf-8")
    args = ("open", "--shop", SHOP, "--reference", "RC-CLI-1", "--class", "ii",
            "--notice-date", "2026-12-01", "--sku", "GLU-METER-01", "--lot", "L2401",
            "--action", "stop_use", "--action", "destroy", "--instructions-file",
            str(instructions), "--no-follow", "--config", str(config))
    code, output = run(*args)
    assert code == 0, output
    assert "opened: rcp_" in output and "by 2026-12-04" in output
    code, again = run(*args)
    assert code == 0 and "already open" in again
    drain(container)
    code, shown = run("show", "RC-CLI-1", "--shop", SHOP, "--config", str(config))
    assert code == 0, shown
    assert "monitoring" in shown and "notified: 7" in shown and "verifies" in shown
    campaign = container.campaigns.by_reference(SHOP, "RC-CLI-1")
    assert campaign is not None
    assert [a.value for a in campaign.notice.actions] == ["stop_use", "destroy"]
    assert campaign.notice.instructions.startswith("停止使用")
    code, listed = run("list", "--shop", SHOP, "--config", str(config))
    assert code == 0 and "RC-CLI-1" in listed and "told 7/7" in listed
    # Taking the report is on the campaign's trail, before the report that names its head.
    code, wrote = run("report", "RC-CLI-1", "--shop", SHOP, "--format", "csv", "--output",
                      str(tmp_path / "r.csv"), "--config", str(config))
    assert code == 0, wrote
    last = container.campaigns.events(campaign.id)[-1]
    assert last.name == "report_exported" and last.data == {"format": "csv"}
    assert last.hash[:12] in wrote or "verifies" in wrote


@pytest.mark.parametrize(("change", "named"), [
    (("--class", "IV"), "--class"),
    (("--notice-date", "01/12/2026"), "--notice-date"),
    (("--lot", "L" * 65), "lots[0]"),
    (("--sku", ""), "sku"),
])
def test_bad_options_are_named_and_open_nothing(config: Path, change: tuple[str, str],
                                                named: str) -> None:
    base = {"--shop": SHOP, "--reference": "RC-CLI-2", "--class": "I",
            "--notice-date": "2026-12-01", "--sku": "GLU-METER-01"}
    base[change[0]] = change[1]
    args = [item for pair in base.items() for item in pair]
    code, output = run("open", *args, "--no-follow", "--config", str(config))
    assert code == 2 and named in output
    code, listed = run("list", "--shop", SHOP, "--config", str(config))
    assert code == 0 and "RC-CLI-2" not in listed


def test_an_unknown_shop_or_campaign_exits_2(config: Path) -> None:
    assert run("list", "--shop", "nope", "--config", str(config))[0] == 2
    assert run("show", "RC-NOPE", "--shop", SHOP, "--config", str(config))[0] == 2
