"""`refundbridge recalls campaign`: a shop's recall campaigns from the command line.

`report` writes the campaign's report (CSV, or the printable HTML with China's implementation
report and the FDA status report) to a file, or to stdout with `--output -`. A file is
written beside its final name and moved into place at the end, so an interrupted 50,000-row
report never leaves half a file under the name asked for.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from refundbridge.cli_options import ConfigOption

if TYPE_CHECKING:
    from refundbridge.bootstrap import Container
    from refundbridge.core.campaign_report import ReportRow, ReportTotals
    from refundbridge.core.campaigns import RecallCampaign

campaign_app = typer.Typer(help="Recall campaigns: from a notice to every consignee, told, "
                                "answered, counted.", no_args_is_help=True)

CampaignShopOption = Annotated[str, typer.Option("--shop", help="the shop's id in the settings")]


class ReportFormat(StrEnum):
    CSV = "csv"
    HTML = "html"


def find_campaign(container: Container, shop: str, ident: str) -> RecallCampaign:
    """The shop's campaign by id (`rcp_…`) or by its notice's reference; `NotFound` for
    one of another shop, as for one that does not exist."""
    from refundbridge.core.errors import NotFound

    container.shop(shop)  # NotFound for a shop that is not configured
    repo = container.campaigns
    campaign = None
    if ident.startswith("rcp_"):
        with suppress(NotFound):
            campaign = repo.get(ident)
    if campaign is None:
        campaign = repo.by_reference(shop, ident)
    if campaign is None or campaign.shop_id != shop:
        raise NotFound(f"no recall campaign {ident!r} in shop {shop}")
    return campaign


def _counted(rows: Iterator[ReportRow], totals: ReportTotals) -> Iterator[ReportRow]:
    for row in rows:
        totals.add(row)
        yield row


def _write(output: Path, chunks: Iterator[bytes]) -> None:
    if str(output) == "-":
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    directory = output.resolve().parent
    handle, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial",
                                       dir=directory)
    try:
        out: BinaryIO
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, output)
    except BaseException:
        with suppress(OSError):
            os.unlink(partial)
        raise


@campaign_app.command("report")
def report(
    campaign: Annotated[str, typer.Argument(
        metavar="CAMPAIGN_ID_OR_REFERENCE",
        help="the campaign's id (rcp_…) or the recall notice's reference")],
    shop: CampaignShopOption,
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False,
                                         help="where to write it ('-': stdout)")],
    report_format: Annotated[ReportFormat, typer.Option(
        "--format", case_sensitive=False, help="csv: one row per consignee; html: the "
        "printable report (召回计划实施情况报告 and the 21 CFR 7.53 status report)")
    ] = ReportFormat.CSV,
    config: ConfigOption = None,
) -> None:
    """Write a campaign's report: every consignee, the totals of those rows, and whether
    the campaign's audit trail verifies."""
    from refundbridge.cli import _bootstrap, _settings
    from refundbridge.cli_evidence import _os_user
    from refundbridge.core.campaign_report import (
        ReportTotals,
        build_report,
        chain_status,
        csv_chunks,
        html_chunks,
        iter_rows,
    )
    from refundbridge.core.errors import NotFound

    container = _bootstrap(_settings(config))
    actor = f"cli:{_os_user()}"
    try:
        found = find_campaign(container, shop, campaign)
        repo = container.campaigns
        if report_format is ReportFormat.CSV:
            totals = ReportTotals()
            _write(output, csv_chunks(_counted(iter_rows(repo, found.id), totals)))
            chain = chain_status(repo.get(found.id), repo.events(found.id))
        else:
            built = build_report(repo, found.id, at=datetime.now(UTC), by=actor)
            totals, chain = built.totals, built.chain
            _write(output, (part.encode("utf-8") for part in html_chunks(built)))
    except NotFound as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
    verdict = (f"audit trail verifies ({chain.events} events, head {chain.head})"
               if chain.verifies else f"audit trail does NOT verify: {chain.problem}")
    where = "stdout" if str(output) == "-" else str(output)
    typer.echo(f"wrote {where}: {found.notice.reference}, {totals.consignees} consignees, "
               f"{totals.notified} notified, {totals.acknowledged} acknowledged; {verdict}",
               err=str(output) == "-")
    if not chain.verifies:
        raise typer.Exit(1)
