"""The recall list through its surfaces: `POST/GET /v1/recalls` on PostgreSQL, and the
`refundbridge recalls` commands on a SQLite file migrated by `refundbridge db upgrade`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect
from typer.testing import CliRunner

from refundbridge.cli import app as cli
from refundbridge.core.recalls import Recall, RecallClass
from refundbridge.store.db import alembic_config, current_revision, make_engine
from tests.factories import AUTH, SHOP, config_toml

GTIN13 = "6901234567892"
GTIN14 = "06901234567892"
CSV = ("\ufeffgtin,sku,lot,serial,class,notice_date,reference\r\n"
       f"{GTIN13},,L2401,,II,2026-11-20,NMPA-2026-0042\r\n"
       ",PUMP-02,,SN-9,I,2026-11-21,NMPA-2026-0043\r\n")
JSON_BODY = {"recalls": [
    {"gtin": GTIN14, "lot": "L2401", "class": "II", "notice_date": "2026-11-20",
     "reference": "NMPA-2026-0042"},
    {"sku": "GLU-METER-01", "class": "III", "notice_date": "2026-11-19",
     "reference": "NMPA-2026-0040"},
]}


def _problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    return body


def _listed(client: Any) -> list[dict[str, Any]]:
    answer = client.get("/v1/recalls", params={"shop": SHOP}, headers=AUTH)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == len(body["recalls"])
    recalls: list[dict[str, Any]] = body["recalls"]
    return recalls


# ------------------------------------------------------------------ API


def test_json_import_is_idempotent_and_listed_newest_first(client, container):
    first = client.post("/v1/recalls", params={"shop": SHOP}, json=JSON_BODY, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json() == {"added": 2, "total": 2}
    again = client.post("/v1/recalls", params={"shop": SHOP}, json=JSON_BODY, headers=AUTH)
    assert again.json() == {"added": 0, "total": 2}
    assert _listed(client) == [
        {"reference": "NMPA-2026-0042", "class": "II", "notice_date": "2026-11-20",
         "gtin": GTIN14, "sku": None, "lot": "L2401", "serial": None},
        {"reference": "NMPA-2026-0040", "class": "III", "notice_date": "2026-11-19",
         "gtin": None, "sku": "GLU-METER-01", "lot": None, "serial": None},
    ]
    # What rule R13 will read: the GTIN-13 on a returned unit finds the GTIN-14 recall.
    found = container.recalls.for_shop(SHOP).match(sku="GLU-METER-01", gtin=GTIN13,
                                                   lot="L2401", serial=None)
    assert found is not None and found.reference == "NMPA-2026-0042"


def test_csv_import_with_bom_then_the_same_recall_as_json_adds_nothing(client):
    answer = client.post("/v1/recalls", params={"shop": SHOP}, content=CSV.encode(),
                         headers={**AUTH, "Content-Type": "text/csv; charset=utf-8"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"added": 2, "total": 2}
    # The CSV's GTIN-13 and the JSON's GTIN-14 are one product: the same recall.
    answer = client.post("/v1/recalls", params={"shop": SHOP}, json=JSON_BODY, headers=AUTH)
    assert answer.json() == {"added": 1, "total": 3}
    assert {(r["reference"], r["serial"]) for r in _listed(client)} == {
        ("NMPA-2026-0042", None), ("NMPA-2026-0043", "SN-9"), ("NMPA-2026-0040", None)}


def test_a_bad_csv_row_is_422_naming_row_and_column_and_imports_nothing(client):
    bad = CSV + ",PUMP-03,,,II,2026-02-30,NMPA-2026-0044\r\n"
    problem = _problem(client.post("/v1/recalls", params={"shop": SHOP}, content=bad.encode(),
                                   headers={**AUTH, "Content-Type": "text/csv"}), 422)
    assert problem["errors"][0]["field"] == "row 4, notice_date"
    assert problem["detail"].startswith("row 4, notice_date: ")
    assert _listed(client) == []


def test_csv_that_is_not_utf8_is_422(client):
    raw = "sku,lot,class,notice_date,reference\n血糖仪,,I,2026-11-20,R\n".encode("gb18030")
    problem = _problem(client.post("/v1/recalls", params={"shop": SHOP}, content=raw,
                                   headers={**AUTH, "Content-Type": "text/csv"}), 422)
    assert problem["errors"][0]["field"] == "body"


@pytest.mark.parametrize(("item", "field"), [
    ({"sku": "S", "class": "II", "notice_date": "20.11.2026", "reference": "R"},
     "recalls.1.notice_date"),
    ({"gtin": "6901234567891", "class": "II", "notice_date": "2026-11-20", "reference": "R"},
     "recalls.1.gtin"),
    ({"class": "II", "notice_date": "2026-11-20", "reference": "R"}, "recalls.1.gtin"),
    ({"gtin": 6901234567892, "class": "II", "notice_date": "2026-11-20", "reference": "R"},
     "recalls.1.gtin"),  # a JSON number would have lost a GTIN-14's leading zero
    ({"sku": "S", "klass": "II", "notice_date": "2026-11-20", "reference": "R"},
     "recalls.1.klass"),
])
def test_a_bad_json_recall_is_422_naming_the_field_and_imports_nothing(client, item, field):
    body = {"recalls": [JSON_BODY["recalls"][0], item]}
    problem = _problem(client.post("/v1/recalls", params={"shop": SHOP}, json=body,
                                   headers=AUTH), 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert _listed(client) == []


def test_an_empty_json_list_is_422(client):
    problem = _problem(client.post("/v1/recalls", params={"shop": SHOP},
                                   json={"recalls": []}, headers=AUTH), 422)
    assert problem["errors"][0]["field"] == "recalls"


def test_unknown_shop_is_404(client):
    _problem(client.get("/v1/recalls", params={"shop": "nope"}, headers=AUTH), 404)
    _problem(client.post("/v1/recalls", params={"shop": "nope"}, json=JSON_BODY,
                         headers=AUTH), 404)


def test_operator_token_is_required(client):
    _problem(client.get("/v1/recalls", params={"shop": SHOP}), 401)
    _problem(client.post("/v1/recalls", params={"shop": SHOP}, json=JSON_BODY,
                         headers={"Authorization": "Bearer wrong"}), 401)
    assert _listed(client) == []


def test_other_media_types_are_415(client):
    _problem(client.post("/v1/recalls", params={"shop": SHOP}, content=b"<recalls/>",
                         headers={**AUTH, "Content-Type": "application/xml"}), 415)


def test_the_openapi_document_offers_json_and_csv(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/recalls"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}
    item = content["application/json"]["schema"]["properties"]["recalls"]["items"]
    assert {"gtin", "sku", "lot", "serial", "class", "notice_date",
            "reference"} <= set(item["properties"])


# ------------------------------------------------------------------ the register


def test_concurrent_imports_of_one_file_store_each_recall_once(container):
    day = date(2026, 11, 1)
    recalls = [Recall(f"R-{i}", RecallClass.II, day + timedelta(days=i % 20), sku=f"S{i % 7}",
                      lot=f"L{i}") for i in range(60)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        added = list(pool.map(lambda _: container.recalls.add(SHOP, recalls), range(4)))
    assert sum(added) == 60
    assert len(container.recalls.for_shop(SHOP)) == 60


def test_recall_lists_are_per_shop(container):
    recall = Recall("R-1", RecallClass.I, date(2026, 11, 20), sku="S1")
    assert container.recalls.add("other-shop", [recall]) == 1
    assert container.recalls.add(SHOP, [recall, recall]) == 1
    assert len(container.recalls.for_shop(SHOP)) == 1
    assert len(container.recalls.for_shop("nobody")) == 0


# ------------------------------------------------------------------ CLI on SQLite


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "refundbridge.toml"
    config.write_text(config_toml(f"sqlite:///{tmp_path / 'refundbridge.db'}"),
                      encoding="utf-8")
    return config


def test_cli_imports_lists_and_reimports_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    config = _config(tmp_path)
    runner = CliRunner()
    upgraded = runner.invoke(cli, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0, upgraded.output
    csv_file = tmp_path / "recalls.csv"
    csv_file.write_bytes(CSV.encode("utf-8"))

    first = runner.invoke(cli, ["recalls", "import", str(csv_file), "--shop", SHOP,
                                "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert "added 2, already known 0" in first.output
    again = runner.invoke(cli, ["recalls", "import", str(csv_file), "--shop", SHOP,
                                "--config", str(config)])
    assert again.exit_code == 0, again.output
    assert "added 0, already known 2" in again.output

    listed = runner.invoke(cli, ["recalls", "list", "--shop", SHOP, "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "gtin,sku,lot,serial,class,notice_date,reference",
        ",PUMP-02,,SN-9,I,2026-11-21,NMPA-2026-0043",
        f"{GTIN14},,L2401,,II,2026-11-20,NMPA-2026-0042",
    ]
    # The listing is itself an import file: feeding it back changes nothing.
    exported = tmp_path / "exported.csv"
    exported.write_text(listed.output, encoding="utf-8")
    back = runner.invoke(cli, ["recalls", "import", str(exported), "--shop", SHOP,
                               "--config", str(config)])
    assert "added 0, already known 2" in back.output


def test_cli_bad_file_names_row_and_column_and_imports_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    config = _config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV + ",PUMP-03,,,V,2026-11-22,NMPA-2026-0045\r\n", encoding="utf-8")
    result = runner.invoke(cli, ["recalls", "import", str(bad), "--shop", SHOP,
                                 "--config", str(config)])
    assert result.exit_code == 1
    assert "row 4, class: 'V' is not a recall class" in result.output
    listed = runner.invoke(cli, ["recalls", "list", "--shop", SHOP, "--config", str(config)])
    assert listed.output.splitlines() == ["gtin,sku,lot,serial,class,notice_date,reference"]

    unknown = runner.invoke(cli, ["recalls", "list", "--shop", "nope", "--config", str(config)])
    assert unknown.exit_code == 2
    assert "no shop 'nope'" in unknown.output


def test_the_migration_goes_down_and_up_again_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrate.db'}"
    # Up to this migration only: later ones are not this test's business.
    command.upgrade(alembic_config(url), "0003")
    assert current_revision(url) == "0003"
    command.downgrade(alembic_config(url), "0002")
    engine = make_engine(url)
    try:
        assert "recalls" not in inspect(engine).get_table_names()
        command.upgrade(alembic_config(url), "0003")
        assert "recalls" in inspect(engine).get_table_names()
        constraints = inspect(engine).get_unique_constraints("recalls")
        assert [c["column_names"] for c in constraints] == [
            ["shop_id", "gtin", "sku", "lot", "serial", "reference"]]
    finally:
        engine.dispose()
