"""`refundbridge evidence`: export a package, verify one offline.

`verify` needs no settings and no database: an auditor runs it on their own machine.
`export` records the export on every case it covers (actor `cli:<os user>`) before it
writes the file, so the package holds its own record.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from refundbridge.cli_options import ConfigOption
from refundbridge.core.evidence import verify_package

evidence_app = typer.Typer(help="Evidence packages: export them, verify them offline.",
                           no_args_is_help=True)


@evidence_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True, help="the package (ZIP) to check")],
) -> None:
    """Check a package offline, with no database or settings.

    Every file's SHA-256 against the manifest and SHA256SUMS, and every case's audit chain
    recomputed. Exit 0 if it all holds, 1 naming the first thing that does not."""
    result = verify_package(file.read_bytes())
    if not result.ok:
        typer.secho(f"{file}: NOT verified: {result.problem}", fg="red", err=True)
        raise typer.Exit(1)
    heads = ", ".join(f"{c.case_id} {c.head}" for c in result.cases)
    typer.echo(f"verified: {len(result.cases)} cases, {result.events} events, heads {heads}")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


@evidence_app.command("export")
def export(
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False,
                                         help="where to write the ZIP")],
    case: Annotated[str | None, typer.Option("--case", help="one case's id")] = None,
    shop: Annotated[str | None, typer.Option(
        "--shop", help="with --lot: every case of this shop touching the lot")] = None,
    lot: Annotated[str | None, typer.Option("--lot", help="the lot number")] = None,
    config: ConfigOption = None,
) -> None:
    """Write the evidence package of one case, or of every case touching a lot.

    The export is recorded on each case (as cli:<os user>) before the package is built."""
    from refundbridge.cli import _bootstrap, _settings
    from refundbridge.core import services
    from refundbridge.core.errors import ConcurrencyConflict, DomainError, NotFound
    from refundbridge.core.evidence import Scope

    one_case = case is not None and shop is None and lot is None
    one_lot = case is None and bool(shop) and bool(lot)
    if not (one_case or one_lot):
        typer.secho("give either --case ID, or --shop S and --lot L", fg="red", err=True)
        raise typer.Exit(2)
    container = _bootstrap(_settings(config))
    actor = f"cli:{_os_user()}"
    try:
        source = container.reads.evidence
        if case is not None:
            container.reads.case_shop(case)  # NotFound for no such case
            scope = Scope.case(case)
            case_ids = [case]
        else:
            assert shop is not None and lot is not None
            container.shop(shop)
            scope = Scope.for_lot(shop, lot)
            case_ids = source.cases_for_lot(shop, lot)
        data = services.export_evidence(container.api_services, source, case_ids, actor, scope)
    except (DomainError, NotFound, ConcurrencyConflict) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc
    finally:
        container.close()
    if str(output) == "-":
        sys.stdout.buffer.write(data)
        return
    output.write_bytes(data)
    result = verify_package(data)
    campaigns = sum(c.case_id.startswith("rcp_") for c in result.cases)
    also = f", {campaigns} recall campaigns" if campaigns else ""
    typer.echo(f"wrote {output}: {scope.describe()}, {len(result.cases) - campaigns} cases"
               f"{also}, {result.events} events (the export is recorded on each as {actor})")
