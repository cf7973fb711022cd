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
    from refundbridge.core.services.campaigns import record_report

    container = _bootstrap(_settings(config))
    actor = f"cli:{_os_user()}"
    try:
        found = find_campaign(container, shop, campaign)
        repo = container.campaigns
        record_report(container.api_services, found.id, actor, report_format.value)
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


class ActionChoice(StrEnum):
    STOP_USE = "stop_use"
    RETURN = "return"
    DESTROY = "destroy"
    AWAIT_CORRECTION = "await_correction"


def _follow(container: Container, campaign_id: str, timeout: float) -> None:
    """A progress bar of the consignees told, until everyone is (the workers do the work;
    this only reads)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from refundbridge.core.campaigns import CampaignState

    repo = container.campaigns
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()) as bar:
        task = bar.add_task("finding consignees in the ERP", total=None)
        while True:
            campaign = repo.get(campaign_id)
            counts = repo.counts(campaign_id)
            finding = campaign.state is CampaignState.IDENTIFYING
            bar.update(task, total=None if finding else max(counts.consignees, 1),
                       completed=counts.notified,
                       description=("finding consignees, telling those found" if finding
                                    else "consignees told"))
            if campaign.state in {CampaignState.MONITORING, CampaignState.CLOSED}:
                return
            if time.monotonic() > deadline:
                typer.echo(f"still {campaign.state.value} after {timeout:.0f} s; "
                           "the workers go on (`campaign show` follows it)", err=True)
                return
            time.sleep(0.5)


@campaign_app.command("open")
def open_command(
    shop: CampaignShopOption,
    reference: Annotated[str, typer.Option(help="the recall notice's reference")],
    recall_class: Annotated[str, typer.Option("--class", help="I, II or III")],
    notice_date: Annotated[str, typer.Option(help="the notice's date, YYYY-MM-DD")],
    sku: Annotated[str | None, typer.Option(help="the shop's SKU (the ERP's item code)")] = None,
    gtin: Annotated[str | None, typer.Option(help="the product's GTIN")] = None,
    lot: Annotated[list[str] | None, typer.Option("--lot", help="a recalled lot (repeat)")
                   ] = None,
    serial: Annotated[list[str] | None, typer.Option("--serial",
                                                     help="a recalled serial (repeat)")
                      ] = None,
    action: Annotated[list[ActionChoice] | None, typer.Option(
        "--action", help="what consignees must do (repeat); default stop_use and return")
    ] = None,
    instructions_file: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="the manufacturer's instructions, UTF-8 text")
    ] = None,
    check_level: Annotated[str, typer.Option(help="effectiveness check level A-E")] = "A",
    check_percent: Annotated[int | None, typer.Option(help="level B: the share checked")
                             ] = None,
    follow: Annotated[bool, typer.Option(help="show the notices' progress until everyone "
                                              "is told")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to follow at most")] = 600.0,
    config: ConfigOption = None,
) -> None:
    """Open the shop's recall campaign for a notice: the workers find every consignee in
    the ERP, quarantine the stock on hand and tell everyone. The same reference again
    changes nothing."""
    from datetime import date

    from refundbridge.cli import _bootstrap, _settings
    from refundbridge.cli_evidence import _os_user
    from refundbridge.core.campaigns import CheckLevel, RecallAction, RecallNotice
    from refundbridge.core.errors import ConfigError, InvalidRequest, NotFound
    from refundbridge.core.recalls import RecallClass
    from refundbridge.core.services.campaigns import open_campaign

    container = _bootstrap(_settings(config))
    try:
        container.shop(shop)
        try:
            when = date.fromisoformat(notice_date)
        except ValueError:
            raise InvalidRequest("--notice-date", f"{notice_date!r} is not YYYY-MM-DD"
                                 ) from None
        try:
            level = CheckLevel(check_level.upper())
            cls = RecallClass(recall_class.upper())
        except ValueError as exc:
            raise InvalidRequest("--class / --check-level", str(exc)) from None
        text = instructions_file.read_text(encoding="utf-8") if instructions_file else ""
        notice = RecallNotice(
            reference=reference, recall_class=cls, notice_date=when, sku=sku, gtin=gtin,
            lots=tuple(lot or ()), serials=tuple(serial or ()),
            actions=tuple(RecallAction(a.value) for a in action) if action else (
                RecallAction.STOP_USE, RecallAction.RETURN),
            instructions=text, check_level=level, check_percent=check_percent)
        opened = open_campaign(container.api_services, shop, notice, f"cli:{_os_user()}")
        campaign = container.campaigns.get(opened.campaign_id)
        typer.echo(f"{'opened' if opened.created else 'already open'}: {campaign.id} "
                   f"({campaign.notice.reference}, class {campaign.notice.recall_class}, "
                   f"everyone to be told by {campaign.notice.notice_due})")
        if follow:
            _follow(container, campaign.id, timeout)
            _print_show(container, campaign.id)
    except InvalidRequest as exc:
        for field, message in exc.errors:
            typer.secho(f"{field}: {message}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except (NotFound, ConfigError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()


@campaign_app.command("list")
def list_command(shop: CampaignShopOption, config: ConfigOption = None) -> None:
    """The shop's campaigns, the newest first."""
    from refundbridge.cli import _bootstrap, _settings
    from refundbridge.core.errors import NotFound

    container = _bootstrap(_settings(config))
    try:
        container.shop(shop)
        for c in container.campaigns.for_shops([shop]):
            counts = container.campaigns.counts(c.id)
            typer.echo(f"{c.id}  {c.notice.reference}  class {c.notice.recall_class}  "
                       f"{c.state.value}  told {counts.notified}/{counts.consignees}  "
                       f"acknowledged {counts.acknowledged}  due {c.notice.notice_due}")
    except NotFound as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()


def _print_show(container: Container, campaign_id: str) -> None:
    from refundbridge.core.audit import verify_chain

    repo = container.campaigns
    c = repo.get(campaign_id)
    counts = repo.counts(campaign_id).as_json()
    check = verify_chain(repo.events(campaign_id))
    n = c.notice
    typer.echo(f"{c.id}: {n.reference}, class {n.recall_class}, {c.state.value}")
    typer.echo(f"  product {n.sku or n.gtin}, lots {', '.join(n.lots) or 'all'}, serials "
               f"{', '.join(n.serials) or 'all'}; notify everyone by {n.notice_due}")
    typer.echo(f"  quarantine: {c.quarantine_document or 'none'} "
               f"({c.quarantined_units} units)")
    if c.walk_failed:
        typer.echo(f"  the ERP walk failed: {c.walk_failed}")
    for key, value in counts.items():
        typer.echo(f"  {key}: {value}")
    typer.echo(f"  audit trail: {'verifies' if check.verifies else 'BROKEN'} "
               f"({check.events} events)")


@campaign_app.command("show")
def show_command(
    campaign: Annotated[str, typer.Argument(metavar="CAMPAIGN_ID_OR_REFERENCE")],
    shop: CampaignShopOption,
    follow: Annotated[bool, typer.Option(help="follow the notices until everyone is told")
                      ] = False,
    config: ConfigOption = None,
) -> None:
    """A campaign's state, counts and trail check."""
    from refundbridge.cli import _bootstrap, _settings
    from refundbridge.core.errors import NotFound

    container = _bootstrap(_settings(config))
    try:
        found = find_campaign(container, shop, campaign)
        if follow:
            _follow(container, found.id, 600.0)
        _print_show(container, found.id)
    except NotFound as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
