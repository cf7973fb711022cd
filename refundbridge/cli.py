"""The `refundbridge` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from config.settings import Settings, load_settings
from core.errors import ConfigError

app = typer.Typer(help="RefundBridge: refunds and returns for medical-device shops.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default: $REFUNDBRIDGE_CONFIG)",
                 envvar="REFUNDBRIDGE_CONFIG"),
]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command()
def demo(
    serve: Annotated[bool, typer.Option("--serve", help="keep the API up afterwards")] = False,
    cases: Annotated[int, typer.Option(help="how many refund requests to send")] = 50,
    port: Annotated[int, typer.Option(help="API port (0: any free port)")] = 0,
    database: Annotated[str, typer.Option(help="SQLite file for the demo")] = (
        "refundbridge-demo.db"),
) -> None:
    """Run the whole system on embedded defaults against sandbox providers."""
    from refundbridge.demo import run_demo

    raise typer.Exit(run_demo(cases=cases, serve=serve, port=port, database=database))


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = _settings(config)
    if workers > 1:
        uvicorn.run("refundbridge.asgi:app", host=host, port=port, workers=workers,
                    log_level="info")
        return
    from api.app import create_app
    from refundbridge.bootstrap import bootstrap

    uvicorn.run(create_app(bootstrap(settings)), host=host, port=port, log_level="info")


@app.command()
def worker(
    config: ConfigOption = None,
    burst: Annotated[bool, typer.Option(help="stop when the queue is empty")] = False,
) -> None:
    """Run one RQ worker process (start as many as you need, on as many machines)."""
    from refundbridge.bootstrap import bootstrap
    from workers.runner import run_worker

    logging.basicConfig(level=logging.INFO)
    settings = _settings(config)
    if settings.redis_url is None:
        typer.secho("a worker process needs redis_url; embedded Redis lives inside `demo`",
                    fg="red", err=True)
        raise typer.Exit(2)
    run_worker(bootstrap(settings), burst=burst)


@app.command()
def reconcile(
    config: ConfigOption = None,
    stale_after: Annotated[float | None, typer.Option(
        help="seconds without progress before work counts as lost")] = None,
) -> None:
    """Find work whose queue job was lost and enqueue it again."""
    from refundbridge.bootstrap import bootstrap
    from workers.reconcile import reconcile as run

    report = run(bootstrap(_settings(config)), stale_after)
    typer.echo(f"requeued {len(report.requeued)} jobs, revived {len(report.revived)} cases")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None,
               revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply Alembic migrations to the configured database."""
    from store.db import upgrade

    settings = _settings(config)
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


if __name__ == "__main__":
    app()
