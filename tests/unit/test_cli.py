"""The `refundbridge` command's answers to bad input: exit 2, naming the key or field."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from importlib.metadata import version as package_version
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from refundbridge.cli import app as cli
from refundbridge.demo import is_demo_database
from refundbridge.store.db import upgrade
from tests.factories import request_body

# Settings come from the environment too: none of the caller's may leak in.
pytestmark = pytest.mark.usefixtures("clean_environment")


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


# ------------------------------------------------------------------ what a newcomer hits

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"
REDIS_URL = os.environ.get("REFUNDBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
PG_ADMIN = os.environ.get("REFUNDBRIDGE_TEST_PG_ADMIN",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nobody listens once the probe is closed


def _config(tmp_path: Path, database_url: str, redis_url: str | None = None) -> Path:
    config = tmp_path / "refundbridge.toml"
    redis_line = f'redis_url = "{redis_url}"' if redis_url else ""
    config.write_text(f"""
database_url = "{database_url}"
{redis_line}
operator_tokens = ["op_7f3a9c1e5b2d4f60"]
[shops.acme]
payment = "sandbox_payment"
erp = "sandbox_erp"
notifier = "sandbox_notifier"
[shops.acme.generic]
secret = "gsec_51c0ffee9d2a"
""", encoding="utf-8")
    return config


def _refused_cleanly(result: Result, key: str) -> None:
    """Exit 2, the key named, a few lines, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception)
    assert f"{key}:" in result.output, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3, result.output


def test_version_is_the_installed_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"refundbridge {package_version('refundbridge')}"


@pytest.mark.parametrize("command", [["reconcile"], ["db", "upgrade"], ["check"],
                                     ["recalls", "list", "--shop", "acme"]])
def test_a_missing_config_file_names_the_option_it_came_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    missing = tmp_path / "nope.toml"
    typed = CliRunner().invoke(cli, [*command, "--config", str(missing)])
    _refused_cleanly(typed, "--config")
    assert "REFUNDBRIDGE_CONFIG" not in typed.output
    monkeypatch.setenv("REFUNDBRIDGE_CONFIG", str(missing))
    from_environment = CliRunner().invoke(cli, command)
    _refused_cleanly(from_environment, "REFUNDBRIDGE_CONFIG")


BAD_DATABASES = {
    "closed-port": lambda tmp: f"postgresql://rb:s3cret-pw@127.0.0.1:{_closed_port()}/rb",
    "missing-database": lambda tmp: PG_ADMIN.rsplit("/", 1)[0] + "/refundbridge_no_such_db",
    "unknown-scheme": lambda tmp: "mysql://rb:s3cret-pw@127.0.0.1/rb",
    "no-such-directory": lambda tmp: f"sqlite:///{tmp / 'missing' / 'rb.db'}",
}


@pytest.mark.parametrize("database", sorted(BAD_DATABASES))
@pytest.mark.parametrize("command", [["db", "upgrade"], ["reconcile"], ["check"],
                                     ["recalls", "list", "--shop", "acme"],
                                     ["worker", "--burst"]])
def test_a_wrong_database_url_exits_2_naming_the_key(
        tmp_path: Path, database: str, command: list[str]) -> None:
    config = _config(tmp_path, BAD_DATABASES[database](tmp_path), REDIS_URL)
    result = CliRunner().invoke(cli, [*command, "--config", str(config)])
    _refused_cleanly(result, "database_url")
    assert "s3cret-pw" not in result.output


@pytest.mark.parametrize("command", [["reconcile"], ["check"]])
def test_no_shop_is_named_before_the_database(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "refundbridge.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path / "missing.db"}"\n',
                      encoding="utf-8")
    _refused_cleanly(CliRunner().invoke(cli, [*command, "--config", str(config)]), "shops")


def test_a_database_without_the_schema_says_to_upgrade(tmp_path: Path) -> None:
    database = tmp_path / "rb.db"
    sqlite3.connect(database).close()  # exists, empty
    config = _config(tmp_path, f"sqlite:///{database}", REDIS_URL)
    result = CliRunner().invoke(cli, ["reconcile", "--config", str(config)])
    _refused_cleanly(result, "database_url")
    assert "refundbridge db upgrade" in result.output
    upgraded = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0, upgraded.output
    assert CliRunner().invoke(cli, ["check", "--config", str(config)]).exit_code == 0


@pytest.mark.parametrize("redis_url", [f"redis://:pw@127.0.0.1:{_closed_port()}/0",
                                       "http://127.0.0.1:6379/0"],
                         ids=["closed-port", "unknown-scheme"])
@pytest.mark.parametrize("command", [["worker", "--burst"], ["reconcile"], ["check"]])
def test_a_wrong_redis_url_exits_2_naming_the_key(tmp_path: Path, redis_url: str,
                                                  command: list[str]) -> None:
    database = tmp_path / "rb.db"
    upgrade(f"sqlite:///{database}")
    config = _config(tmp_path, f"sqlite:///{database}", redis_url)
    result = CliRunner().invoke(cli, [*command, "--config", str(config)])
    _refused_cleanly(result, "redis_url")
    assert ":pw@" not in result.output


def test_example_toml_reports_every_placeholder_in_one_run() -> None:
    result = CliRunner().invoke(cli, ["check", "--config", str(EXAMPLE)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for key in ("operator_tokens.0", "operator_tokens.1", "shops.acme.generic.secret",
                "shops.acme.stripe.api_key", "shops.acme.stripe.webhook_secret",
                "shops.acme.erpnext.api_key", "shops.acme.erpnext.api_secret",
                "shops.acme.smtp.password"):
        assert f"{key}:" in result.output, result.output


def test_check_with_worker_needs_a_live_worker_on_this_host(tmp_path: Path) -> None:
    from redis import Redis
    from rq import Queue, Worker

    database = tmp_path / "rb.db"
    config = _config(tmp_path, f"sqlite:///{database}", REDIS_URL)
    assert CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    redis = Redis.from_url(REDIS_URL)
    redis.flushdb()
    try:
        assert CliRunner().invoke(cli, ["check", "--config", str(config)]).exit_code == 0
        alone = CliRunner().invoke(cli, ["check", "--worker", "--config", str(config)])
        assert alone.exit_code == 1, alone.output
        assert "no RQ worker" in alone.output
        worker = Worker([Queue("refundbridge", connection=redis)], connection=redis)
        worker.register_birth()
        try:
            alive = CliRunner().invoke(cli, ["check", "--worker", "--config", str(config)])
            assert alive.exit_code == 0, alive.output
        finally:
            worker.register_death()
    finally:
        redis.flushdb()
        redis.close()


# ------------------------------------------------------------------ the demo's database


def test_the_demo_leaves_a_file_it_did_not_make_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes", encoding="utf-8")
    result = CliRunner().invoke(cli, ["demo", "--database", str(notes)])
    _refused_cleanly(result, "--database")
    assert notes.read_text(encoding="utf-8") == "my notes"


def test_the_demo_leaves_another_sqlite_database_alone(tmp_path: Path) -> None:
    database = tmp_path / "refundbridge.db"  # e.g. an embedded-mode deployment's own
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE cases (id TEXT)")
        db.execute("INSERT INTO cases VALUES ('c1')")
    before = database.read_bytes()
    result = CliRunner().invoke(cli, ["demo", "--database", str(database)])
    _refused_cleanly(result, "--database")
    assert database.read_bytes() == before


def test_the_demo_refuses_a_directory_or_a_missing_one(tmp_path: Path) -> None:
    _refused_cleanly(CliRunner().invoke(cli, ["demo", "--database", str(tmp_path)]),
                     "--database")
    _refused_cleanly(CliRunner().invoke(cli, ["demo", "--database",
                                              str(tmp_path / "no" / "demo.db")]), "--database")


def test_the_demo_replaces_its_own_database(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    first = CliRunner().invoke(cli, ["demo", "--cases", "1", "--database", str(database)])
    assert first.exit_code == 0, first.output
    assert is_demo_database(database)
    again = CliRunner().invoke(cli, ["demo", "--cases", "1", "--database", str(database)])
    assert again.exit_code == 0, again.output
    with sqlite3.connect(database) as db:
        (cases,) = db.execute("SELECT count(*) FROM cases").fetchone()
    assert cases == 1  # afresh: the first run's case is gone
