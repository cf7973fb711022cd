"""`refundbridge signals`: quality signals from the command line.

`run` evaluates the shops' thresholds now (what the periodic job does), raises what is
crossed, tells the quality contact, and prints what it did; running it again raises nothing
twice. `list` prints a shop's signals.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from refundbridge.cli_options import ConfigOption

signals_app = typer.Typer(help="Quality signals: returns that point at a bad lot.",
                          no_args_is_help=True)


@signals_app.command("run")
def run(
    config: ConfigOption = None,
    shop: Annotated[list[str] | None, typer.Option(
        "--shop", help="only this shop (repeatable); default: every shop")] = None,
    at: Annotated[datetime | None, typer.Option(
        "--at", help="judge as of this time (ISO 8601, UTC if no offset); default: now")
    ] = None,
) -> None:
    """Evaluate every shop's signal thresholds once; exit 0, printing the run as JSON."""
    from refundbridge.cli import _bootstrap, _settings
    from refundbridge.core.errors import NotFound
    from refundbridge.workers.signals import run_signal_job

    container = _bootstrap(_settings(config))
    try:
        for name in shop or ():
            container.shop(name)
    except NotFound as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    now = None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))
    try:
        report = run_signal_job(container, list(shop) if shop else None, now)
    finally:
        container.close()
    typer.echo(json.dumps(report.as_json(), indent=2))


@signals_app.command("list")
def list_signals(
    config: ConfigOption = None,
    shop: Annotated[str | None, typer.Option("--shop", help="only this shop")] = None,
) -> None:
    """Print the signals, newest first, one a line."""
    from refundbridge.cli import _bootstrap, _settings

    container = _bootstrap(_settings(config))
    try:
        store = container.services.signals
        assert store is not None
        for s in store.for_shops([shop] if shop else None):
            measured = (f"{s.rate_percent}% of {s.shipped}" if s.rate_percent is not None
                        else f"{s.count} cases")
            typer.echo(f"{s.id}  {s.shop_id}  {s.sku}  {s.lot or '-'}  "
                       f"{s.threshold.name.value}  {measured}  "
                       f"{s.window.start}..{s.window.last_day}  {s.state.value}")
    finally:
        container.close()
