"""Run in a fresh interpreter by test_third_party_connector.py, with the installed plugin on
PYTHONPATH and nothing else changed: list the connectors the way the `refundbridge`
command does, then run one shop whose notifier is the plugin, on SQLite and the embedded
Redis. Prints one JSON report on the last line of stdout.

Usage: python run_plugin_shop.py <work directory>
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from refundbridge.api.app import create_app
from refundbridge.bootstrap import bootstrap
from refundbridge.cli import app as cli
from refundbridge.config.settings import load_settings
from refundbridge.store.db import upgrade
from refundbridge.workers.runner import drain
from tests.factories import request_body, signed

SHOP = "plugin-pharmacy"


def main(workdir: Path) -> dict[str, object]:
    runner = CliRunner()
    listing = runner.invoke(cli, ["connectors", "--json"])
    if listing.exit_code != 0:
        raise SystemExit(f"`refundbridge connectors --json` failed: {listing.output}")
    table = runner.invoke(cli, ["connectors"], terminal_width=200)
    strict = runner.invoke(cli, ["connectors", "--strict"], terminal_width=200)

    url = f"sqlite:///{workdir / 'refundbridge.db'}"
    upgrade(url)
    secret = "gsec_" + secrets.token_hex(16)
    token = "op_" + secrets.token_hex(16)
    settings = load_settings(None, database_url=url, operator_tokens=[token], shops={SHOP: {
        "storefront": "generic", "payment": "sandbox_payment", "erp": "sandbox_erp",
        "notifier": "file_notifier",
        "policy": {"refund_timing": "on_approval"},
        "generic": {"secret": secret},
        "file_notifier": {"path": str(workdir / "outbox.jsonl")},
    }})
    container = bootstrap(settings)  # no redis_url: the embedded, in-process Redis
    try:
        with TestClient(create_app(container, dashboard=False)) as client:
            raw, headers = signed(request_body(), secret=secret)
            answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
            case_id = answer.json()["case_id"]
            drain(container)
            case = client.get(f"/v1/cases/{case_id}",
                              headers={"Authorization": f"Bearer {token}"}).json()
        notifier = type(container.shops[SHOP].gateways.notifier)
    finally:
        container.close()
    return {
        "connectors": json.loads(listing.output),
        "table": {"exit_code": table.exit_code, "output": table.output},
        "strict_exit_code": strict.exit_code,
        "webhook_status": answer.status_code,
        "case_id": case_id,
        "state": case["state"],
        "notifier_class": f"{notifier.__module__}:{notifier.__qualname__}",
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
