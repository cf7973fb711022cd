"""The `refundbridge` command."""

from __future__ import annotations

import logging
import os
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from refundbridge.config.settings import Settings, load_settings
from refundbridge.connectors.base import ConfigProblems
from refundbridge.core.errors import ConfigError
from refundbridge.process import freeze_startup_objects

if TYPE_CHECKING:
    from refundbridge.bootstrap import Container

app = typer.Typer(help="RefundBridge: refunds and returns for medical-device shops.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

from refundbridge.cli_options import ConfigOption  # noqa: E402  (shared by the groups)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"refundbridge {package_version('refundbridge')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="print the installed version and exit")] = False,
) -> None:
    """RefundBridge: refunds and returns for medical-device shops."""


def _refuse(exc: ConfigError) -> NoReturn:
    """Exit 2 naming every refused key, one a line, like every settings error."""
    problems = exc.problems if isinstance(exc, ConfigProblems) else (exc,)
    if len(problems) > 1:
        typer.secho(f"configuration errors ({len(problems)}):", fg="red", err=True)
    for problem in problems:
        typer.secho(f"configuration error: {problem}", fg="red", err=True)
    raise typer.Exit(2) from exc


def _settings(config: Path | None) -> Settings:
    """Settings, checked whole (placeholder tokens and every shop's connector settings
    together), or exit 2 naming every refused key."""
    from refundbridge.bootstrap import check_settings

    try:
        settings = load_settings(config, config_origin="--config" if config else None,
                                 check_secrets=False)
        check_settings(settings)
    except ConfigError as exc:
        _refuse(exc)
    return settings


def _check_services(settings: Settings, *, redis: bool) -> None:
    """Exit 2 naming `database_url` (or `redis_url`) when it does not answer as it should."""
    from refundbridge.bootstrap import check_database, check_redis

    try:
        check_database(settings.database_url)
        if redis:
            check_redis(settings.redis_url)
    except ConfigError as exc:
        _refuse(exc)


def _require_shops(settings: Settings) -> None:
    # bootstrap() says so too, but only after the database check has had its say.
    if not settings.shops:
        _refuse(ConfigError("shops", "configure at least one shop"))


def _bootstrap(settings: Settings, *, redis: bool = False) -> Container:
    """The container once the database (and, for `redis=True`, Redis) answered; exit 2
    naming the key otherwise."""
    from refundbridge.bootstrap import bootstrap

    _require_shops(settings)
    _check_services(settings, redis=redis)
    try:
        return bootstrap(settings)
    except ConfigError as exc:
        _refuse(exc)


demo_app = typer.Typer(help="Run the whole system on embedded defaults against sandbox "
                             "providers.", invoke_without_command=True)
app.add_typer(demo_app, name="demo")


@demo_app.callback()
def demo(
    ctx: typer.Context,
    serve: Annotated[bool, typer.Option(
        "--serve", help="afterwards keep the API, the console and the worker up, with "
                        "console logins for the demo shop")] = False,
    cases: Annotated[int, typer.Option(help="how many refund requests to send")] = 50,
    port: Annotated[int, typer.Option(help="API port (0: any free port)")] = 0,
    database: Annotated[str, typer.Option(help="SQLite file for the demo")] = (
        "refundbridge-demo.db"),
) -> None:
    """Run the whole system on embedded defaults against sandbox providers."""
    if ctx.invoked_subcommand is not None:
        return
    from refundbridge.demo import run_demo

    try:
        code = run_demo(cases=cases, serve=serve, port=port, database=database)
    except ConfigError as exc:
        _refuse(exc)
    raise typer.Exit(code)


@demo_app.command("send")
def demo_send(
    url: Annotated[str, typer.Option(help="the running demo's API, as `demo --serve` prints")],
    secret: Annotated[str, typer.Option(help="the demo shop's webhook secret, as printed")],
    reason: Annotated[str, typer.Option(help="the customer's reason code")] = "defective",
    kind: Annotated[str, typer.Option(help="return_and_refund or refund_only")] = (
        "return_and_refund"),
) -> None:
    """Send one new signed request to a running `demo --serve`, as the storefront would."""
    import httpx

    from refundbridge.demo import send_request

    try:
        answer = send_request(url, secret, reason=reason, kind=kind)
    except httpx.HTTPStatusError as exc:
        typer.secho(f"{exc.response.status_code}: {exc.response.text}", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    except httpx.HTTPError as exc:
        typer.secho(f"cannot reach {url}: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    case_id = answer["case_id"]
    typer.echo(f"case {case_id}: {url.rstrip('/')}/console/cases/{case_id}")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from refundbridge import telemetry

    settings = _settings(config)
    telemetry.configure_logging(settings.log_format)
    if workers > 1:
        _require_shops(settings)
        _check_services(settings, redis=False)
        if config is not None:  # the worker processes read their settings afresh
            os.environ["REFUNDBRIDGE_CONFIG"] = str(config.resolve())
        with telemetry.multiprocess_metrics():  # /metrics adds up every process's counters
            uvicorn.run("refundbridge.asgi:app", host=host, port=port, workers=workers,
                        log_level="info", log_config=telemetry.uvicorn_log_config())
        return
    from refundbridge.api.app import create_app

    if settings.tracing:
        telemetry.setup_tracing("refundbridge-api")
    app = create_app(_bootstrap(settings))
    if settings.tracing:
        telemetry.instrument_app(app)
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="info",
                log_config=telemetry.uvicorn_log_config())


@app.command()
def worker(
    config: ConfigOption = None,
    burst: Annotated[bool, typer.Option(help="stop when the queue is empty")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve this worker's Prometheus metrics at http://127.0.0.1:PORT/metrics",
        min=1, max=65535)] = None,
) -> None:
    """Run one RQ worker process (start as many as you need, on as many machines)."""
    from refundbridge import telemetry
    from refundbridge.workers.metrics import serve_metrics
    from refundbridge.workers.runner import run_worker

    settings = _settings(config)
    telemetry.configure_logging(settings.log_format, logging.INFO)
    if settings.redis_url is None:
        typer.secho("a worker process needs redis_url; embedded Redis lives inside `demo`",
                    fg="red", err=True)
        raise typer.Exit(2)
    if settings.tracing:
        telemetry.setup_tracing("refundbridge-worker")
    container = _bootstrap(settings, redis=True)
    if metrics_port is not None:
        try:
            serve_metrics(metrics_port)
        except OSError as exc:
            typer.secho(f"--metrics-port: cannot listen on 127.0.0.1:{metrics_port}: {exc}",
                        fg="red", err=True)
            raise typer.Exit(2) from exc
    freeze_startup_objects()
    run_worker(container, burst=burst)


@app.command()
def reconcile(
    config: ConfigOption = None,
    stale_after: Annotated[float | None, typer.Option(
        help="seconds without progress before work counts as lost")] = None,
    pending_after: Annotated[float | None, typer.Option(
        help="seconds a refund may stay pending before its provider is asked")] = None,
) -> None:
    """Find work whose queue job was lost and enqueue it again; poll pending refunds."""
    from refundbridge.workers.reconcile import reconcile as run

    report = run(_bootstrap(_settings(config), redis=True), stale_after,
                 pending_after=pending_after)
    typer.echo(f"requeued {len(report.requeued)} jobs, revived {len(report.revived)} cases")


@app.command()
def evaluate(
    case_file: Annotated[Path, typer.Argument(
        help="a normalized request as JSON, or {\"request\": …, \"inspections\": […]}",
        exists=True, dir_okay=False, readable=True)],
    shop: Annotated[str | None, typer.Option(help="the shop whose policy, recall list and "
                                                  "history apply")] = None,
    at: Annotated[str | None, typer.Option(help="YYYY-MM-DD: evaluate as of this day")] = None,
    config: ConfigOption = None,
) -> None:
    """Print the rules' decision for a request as JSON, storing nothing.

    With a configured shop (`--shop`, or the only one configured), its policy, recall list
    and the customer's earlier requests are read from the database; with no shop configured,
    the default policy applies to the request alone."""
    import json
    from datetime import UTC, date, datetime

    from refundbridge.api.schemas import read_evaluation
    from refundbridge.config.settings import PolicySettings
    from refundbridge.core import services
    from refundbridge.core.compliance import MedicalDeviceRuleSet
    from refundbridge.core.errors import InvalidRequest
    from refundbridge.core.policy import at_noon
    from refundbridge.core.rules import EvaluationContext

    try:
        day = date.fromisoformat(at) if at else None
    except ValueError as exc:
        typer.secho(f"--at: {at!r} is not a date (YYYY-MM-DD)", fg="red", err=True)
        raise typer.Exit(2) from exc
    try:
        request, inspections = read_evaluation(case_file.read_bytes())
    except InvalidRequest as exc:
        typer.secho(f"{case_file}: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    settings = _settings(config)
    shop = shop or (next(iter(settings.shops)) if len(settings.shops) == 1 else None)
    if shop is None:
        policy = PolicySettings().to_policy()
        now = at_noon(day, policy.timezone) if day else datetime.now(UTC)
        ctx = EvaluationContext(request, policy, request.paid, now,
                                inspections=tuple(inspections))
        decision = services.rules_decision(MedicalDeviceRuleSet(), ctx)
    else:
        if shop not in settings.shops:
            typer.secho(f"--shop: no shop '{shop}' is configured", fg="red", err=True)
            raise typer.Exit(2)
        container = _bootstrap(settings)
        try:
            svc = container.api_services
            policy = container.shop(shop).policy
            now = at_noon(day, policy.timezone) if day else svc.clock()
            decision = services.preview(svc, shop, request, now, inspections)
        finally:
            container.close()
    typer.echo(json.dumps({**decision.as_json(), "shop": shop,
                           "evaluated_at": now.isoformat()}, ensure_ascii=False, indent=2))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None,
               revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply Alembic migrations to the configured database."""
    from refundbridge.bootstrap import check_database
    from refundbridge.store.db import upgrade

    settings = _settings(config)
    try:
        check_database(settings.database_url, require_schema=False)
    except ConfigError as exc:
        _refuse(exc)
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def check(
    config: ConfigOption = None,
    worker: Annotated[bool, typer.Option(
        "--worker", help="also require a live RQ worker on this host (a container's "
                         "healthcheck)")] = False,
) -> None:
    """Check the settings, the database (reachable, schema current) and Redis.

    Exit 0 if all is well, 2 naming the key that is not, 1 if `--worker` finds no worker."""
    import socket

    from rq import Worker

    from refundbridge.bootstrap import make_redis

    settings = _settings(config)
    _require_shops(settings)
    _check_services(settings, redis=True)
    if worker:
        if settings.redis_url is None:
            typer.secho("--worker: workers need redis_url", fg="red", err=True)
            raise typer.Exit(2)
        redis = make_redis(settings.redis_url)
        try:
            host = socket.gethostname()
            mine = [w for w in Worker.all(connection=redis) if w.hostname == host]
        finally:
            redis.close()
        if not mine:
            # Registrations expire without heartbeats, so none means no live worker here.
            typer.secho(f"no RQ worker is registered from {host}", fg="red", err=True)
            raise typer.Exit(1)
    typer.echo("settings, database" + (", Redis" if settings.redis_url else "")
               + (" and the worker" if worker else "") + ": ok")


# ------------------------------------------------------------------ connectors


@app.command("connectors")
def list_connectors(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = (
        False),
    strict: Annotated[bool, typer.Option(
        "--strict", help="exit 1 if any installed connector fails to load")] = False,
) -> None:
    """List installed connectors with their roles and capabilities.

    These are the `refundbridge.connectors` entry points; one that fails to load is shown
    with its error."""
    import json

    from rich.console import Console
    from rich.table import Table

    from refundbridge.connectors.registry import ConnectorRegistry

    infos = ConnectorRegistry.discover().describe()
    if as_json:
        typer.echo(json.dumps([
            {"name": i.name, "source": i.source, "roles": sorted(i.roles),
             "capabilities": sorted(i.capabilities), "error": i.error} for i in infos
        ], indent=2))
    else:
        console = Console()
        table = Table("connector (entry point)", "roles", "capabilities",
                      title="Installed connectors")
        for i in infos:
            name = f"{i.name}\n[dim]{i.source}[/dim]"
            if i.error:
                table.add_row(name, "", "[red]does not load (below)[/red]")
            else:
                table.add_row(name, "\n".join(sorted(i.roles)),
                              "\n".join(sorted(i.capabilities)))
        console.print(table)
        for i in infos:
            if i.error:
                console.print(f"[red]{i.name}[/red]: {i.error}", highlight=False)
    # A plugin no shop uses cannot stop the service, so a broken one fails only on request.
    if strict and any(i.error for i in infos):
        raise typer.Exit(1)


# ------------------------------------------------------------------ recalls (rule R13)

recalls_app = typer.Typer(help="The recall list that rule R13 checks returns against.",
                          no_args_is_help=True)
app.add_typer(recalls_app, name="recalls")
ShopOption = Annotated[str, typer.Option("--shop", help="the shop's id in the settings")]


@recalls_app.command("import")
def recalls_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="CSV: gtin or sku, lot, serial, class, "
                                              "notice_date, reference")],
    shop: ShopOption,
    config: ConfigOption = None,
) -> None:
    """Import recall notices from a CSV file; all or nothing, and known ones are skipped."""
    from refundbridge.core.errors import InvalidRequest, NotFound
    from refundbridge.core.recalls import decode_csv, parse_recall_csv

    container = _bootstrap(_settings(config))
    try:
        container.shop(shop)
        recalls = parse_recall_csv(decode_csv(file.read_bytes()))
        added = container.recalls.add(shop, recalls)
        total = len(container.recalls.for_shop(shop))
    except NotFound as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    except InvalidRequest as exc:
        for field, message in exc.errors:
            typer.secho(f"{file}: {field}: {message}", fg="red", err=True)
        typer.secho("nothing was imported", fg="red", err=True)
        raise typer.Exit(1) from exc
    finally:
        container.close()
    typer.echo(f"added {added}, already known {len(recalls) - added}; "
               f"the recall list of {shop} has {total}")


@recalls_app.command("list")
def recalls_list(shop: ShopOption, config: ConfigOption = None) -> None:
    """Print the shop's recall list as CSV, the newest notice first."""
    import csv
    import sys

    from refundbridge.core.errors import NotFound
    from refundbridge.core.recalls import COLUMNS

    container = _bootstrap(_settings(config))
    try:
        container.shop(shop)
        recalls = container.recalls.for_shop(shop)
    except NotFound as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
    writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: v or "" for k, v in r.as_json().items()} for r in recalls)


from refundbridge.cli_operators import operators_app  # noqa: E402

app.add_typer(operators_app, name="operators")

from refundbridge.cli_evidence import evidence_app  # noqa: E402

app.add_typer(evidence_app, name="evidence")

from refundbridge.cli_campaigns import campaign_app  # noqa: E402

recalls_app.add_typer(campaign_app, name="campaign")

from refundbridge.cli_signals import signals_app  # noqa: E402

app.add_typer(signals_app, name="signals")

if __name__ == "__main__":
    app()
