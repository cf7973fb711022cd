"""`refundbridge evidence export` writes a package and records the export on each case;
`refundbridge evidence verify` checks it in a process with no database and no settings,
and names the first thing tampered with."""

from __future__ import annotations

import getpass
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from refundbridge.bootstrap import Container
from refundbridge.cli import app as cli
from tests.conftest import drain, open_case
from tests.factories import SHOP, config_toml


def verify_in_a_bare_process(package: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`refundbridge evidence verify` where no settings, no database and no Redis are
    known: only PATH and the package."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "refundbridge.cli", "evidence", "verify",
                           str(package)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def rewrite(package: Path, target: Path, path: str, old: bytes, new: bytes) -> None:
    with zipfile.ZipFile(package) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert old in files[path]
    files[path] = files[path].replace(old, new, 1)
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


def events_of(package: Path, case_id: str) -> list[dict[str, Any]]:
    with zipfile.ZipFile(package) as archive:
        return list(json.loads(archive.read(f"cases/{case_id}/events.json")))


def test_export_then_verify_offline_and_a_tampered_copy_fails(
        client: TestClient, container: Container, providers: Any, database_url: str,
        tmp_path: Path, monkeypatch: Any) -> None:
    _, _, erp = providers
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    case_id, _ = open_case(client, erp, **{"lines.0.lot": "LOT-CLI-1"})
    other, _ = open_case(client, erp, **{"lines.0.lot": "LOT-CLI-1"})
    elsewhere, _ = open_case(client, erp, **{"lines.0.lot": "LOT-CLI-2"})
    drain(container)
    config = tmp_path / "refundbridge.toml"
    config.write_text(config_toml(database_url), encoding="utf-8")

    package = tmp_path / "case.zip"
    exported = CliRunner().invoke(cli, ["evidence", "export", "--case", case_id, "-o",
                                        str(package), "--config", str(config)])
    assert exported.exit_code == 0, exported.output
    assert f"case {case_id}, 1 cases" in exported.output
    actor = f"cli:{getpass.getuser()}"
    assert events_of(package, case_id)[-1]["name"] == "evidence_exported"
    assert events_of(package, case_id)[-1]["actor"] == actor
    live = container.reads.case_evidence(case_id)
    assert live["verifies"] and live["chain"][-1]["actor"] == actor

    verified = verify_in_a_bare_process(package, tmp_path)
    assert verified.returncode == 0, verified.stderr
    head = live["head"]
    count = live["events"]
    assert verified.stdout.strip() == (
        f"verified: 1 cases, {count} events, heads {case_id} {head}")

    # One byte of one event changed: exit 1, naming the event.
    tampered = tmp_path / "tampered.zip"
    rewrite(package, tampered, f"cases/{case_id}/events.json", b'"cli:', b'"clj:')
    failed = verify_in_a_bare_process(tampered, tmp_path)
    assert failed.returncode == 1
    assert (f"NOT verified: cases/{case_id}/events.json: event {count} (evidence_exported): "
            "hash does not match its content") in failed.stderr
    # The report edited: the file is named.
    edited = tmp_path / "edited.zip"
    rewrite(package, edited, "report.html", b"RefundBridge evidence", b"RefundBridge evidencE")
    failed = verify_in_a_bare_process(edited, tmp_path)
    assert failed.returncode == 1
    assert "report.html: SHA-256 does not match manifest.json" in failed.stderr
    # Not a package at all.
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    failed = verify_in_a_bare_process(junk, tmp_path)
    assert failed.returncode == 1 and "not a ZIP archive" in failed.stderr

    # Per lot: exactly the shop's cases touching it.
    lot_package = tmp_path / "lot.zip"
    exported = CliRunner().invoke(cli, ["evidence", "export", "--shop", SHOP, "--lot",
                                        "LOT-CLI-1", "-o", str(lot_package), "--config",
                                        str(config)])
    assert exported.exit_code == 0, exported.output
    with zipfile.ZipFile(io.BytesIO(lot_package.read_bytes())) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert sorted(c["case_id"] for c in manifest["cases"]) == sorted([case_id, other])
    assert manifest["scope"] == {"kind": "lot", "shop_id": SHOP, "lot": "LOT-CLI-1"}
    assert verify_in_a_bare_process(lot_package, tmp_path).returncode == 0
    names = [e["name"] for e in container.reads.case_detail(elsewhere)["timeline"]]
    assert "evidence_exported" not in names


def test_export_refuses_what_it_cannot_do(container: Container, database_url: str,
                                          tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    config = tmp_path / "refundbridge.toml"
    config.write_text(config_toml(database_url), encoding="utf-8")
    out = tmp_path / "x.zip"
    runner = CliRunner()
    for args, expected in (
            (["--case", "rc_nosuch"], "no case rc_nosuch"),
            (["--shop", SHOP, "--lot", "NO-SUCH-LOT"], "no case for lot NO-SUCH-LOT"),
            (["--shop", "no-such-shop", "--lot", "L1"], "no shop 'no-such-shop'"),
            (["--case", "rc_x", "--lot", "L1"], "give either --case ID"),
            ([], "give either --case ID")):
        result = runner.invoke(cli, ["evidence", "export", *args, "-o", str(out),
                                     "--config", str(config)])
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
    assert not out.exists()
