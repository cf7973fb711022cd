"""Evidence per lot `/console/evidence`: every case of one of the operator's shops that
touches a lot (a unit of it named in the request, `case_units`), in one package an auditor
verifies offline with `refundbridge evidence verify`. The export is a POST: it is recorded
on each case it covers before the package is built."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.console.case import zip_response
from refundbridge.api.console.web import PREFIX, ConsoleUser, ConsoleWriter, render
from refundbridge.api.deps import AppDeps
from refundbridge.core import services
from refundbridge.core.access import Permission
from refundbridge.core.evidence import Scope

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOT_MAX = 64  # case_units.lot


def _shops(user: ConsoleUser | ConsoleWriter, deps: AppDeps) -> list[str]:
    return user.principal.visible(deps.shop_ids)


@router.get("/evidence")
async def evidence_page(request: Request, user: ConsoleUser, deps: AppDeps,
                        shop: str = "", lot: str = "") -> Response:
    user.principal.require(Permission.EXPORT)
    return render(request, "evidence.html", user, shops=_shops(user, deps), shop=shop,
                  lot=lot[:LOT_MAX], error="")


@router.post("/evidence/lot")
async def export_lot(request: Request, user: ConsoleWriter, deps: AppDeps,
                     shop: Annotated[str, Form(max_length=64)] = "",
                     lot: Annotated[str, Form(max_length=LOT_MAX)] = "") -> Response:
    user.principal.require(Permission.EXPORT)
    shops = _shops(user, deps)
    lot = lot.strip()
    if shop not in shops or not lot:
        return render(request, "evidence.html", user, status=422, shops=shops, shop=shop,
                      lot=lot, error="Choose one of your shops and type a lot number.")
    source = deps.reads.evidence
    # No case may still mean a recall campaign of the lot: export_evidence says NotFound
    # when there is neither.
    case_ids = await run_in_threadpool(source.cases_for_lot, shop, lot, shops)
    data = await run_in_threadpool(
        services.export_evidence, deps.api_services, source, case_ids,
        user.principal.actor, Scope.for_lot(shop, lot))
    # A header is Latin-1: anything else in the lot becomes "_" in the file's name.
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else "_" for ch in lot)
    return zip_response(data, f"evidence-{shop}-lot-{safe}.zip")
