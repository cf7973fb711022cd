"""A third party's connector package, installed with pip, is listed and used by a shop with
no change to RefundBridge's code or settings schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PACKAGE = HERE / "file_notifier"


def clean_env(**extra: str) -> dict[str, str]:
    # The shop is configured in the script alone: no settings file or override may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDBRIDGE_")}
    return {**env, **extra}


def test_installed_plugin_is_listed_and_notifies_a_shops_customer(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--no-cache-dir", "--target", str(target), str(PACKAGE)],
        check=True, capture_output=True, timeout=120,
        env=clean_env(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert (target / "rb_file_notifier-0.1.0.dist-info" / "entry_points.txt").is_file()
    # A second, broken plugin: its entry point names a module nobody installed.
    broken = target / "rb_broken-0.1.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-broken\nVersion: 0.1\n")
    (broken / "entry_points.txt").write_text(
        "[refundbridge.connectors]\nbroken_example = rb_not_installed_anywhere:Connector\n")

    run = subprocess.run(
        [sys.executable, str(HERE / "run_plugin_shop.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=clean_env(PYTHONPATH=os.pathsep.join([str(target), str(ROOT)])),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])

    listed = {c["name"]: c for c in report["connectors"]}
    assert listed["file_notifier"] == {
        "name": "file_notifier", "source": "rb_file_notifier:FileNotifier",
        "roles": ["notifier"], "capabilities": ["notifier.email"], "error": None}
    error = listed["broken_example"]["error"]
    assert "entry point broken_example" in error and "ModuleNotFoundError" in error
    # The broken plugin is shown with its error; it fails the command only under --strict.
    assert report["table"]["exit_code"] == 0
    assert "file_notifier" in report["table"]["output"]
    assert "broken_example: entry point broken_example" in report["table"]["output"]
    assert report["strict_exit_code"] == 1
    assert report["notifier_class"] == "rb_file_notifier:FileNotifier"
    assert report["webhook_status"] == 202
    assert report["state"] == "closed"
    case_id = report["case_id"]
    sent = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert {(m["case_id"], m["kind"]) for m in sent} == {
        (case_id, "received"), (case_id, "approved"), (case_id, "refunded")}
    assert all(m["email"] == "li.wei@example.com" and m["locale"] == "zh-CN" for m in sent)
