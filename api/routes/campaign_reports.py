"""The operator API for a recall campaign's report: CSV or the printable HTML, streamed.

Exporting it needs the EXPORT permission (as an evidence package does); a campaign of a
shop the caller does not see answers 404, as if it did not exist, before any role check.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from refundbridge.api.deps import AppDeps, Operator
from refundbridge.core.access import Permission, Principal
from refundbridge.core.campaign_report import (
    build_report,
    csv_chunks,
    html_chunks,
    iter_rows,
)
from refundbridge.core.campaigns import RecallCampaign
from refundbridge.core.errors import NotFound
from refundbridge.core.services.campaigns import record_report
from refundbridge.store.campaigns import SqlCampaignRepository

router = APIRouter(prefix="/v1", tags=["recall campaigns"])

# The HTML report is a document, not an application: nothing in it may run or load.
HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def _campaign(repo: SqlCampaignRepository, operator: Principal,
              campaign_id: str) -> RecallCampaign:
    try:
        campaign = repo.get(campaign_id)
    except NotFound:
        raise NotFound(f"no recall campaign {campaign_id}") from None
    operator.require_shop(campaign.shop_id, f"recall campaign {campaign_id}")
    return campaign


def _encoded(chunks: Iterator[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")


@router.get(
    "/recall-campaigns/{campaign_id}/report",
    response_class=StreamingResponse,
    responses={200: {"description": "The report: CSV (UTF-8 with a BOM, one row per "
                                    "consignee) or one printable HTML document",
                     "content": {"text/csv": {}, "text/html": {}}},
               403: {"description": "The caller's role may not export"},
               404: {"description": "No such campaign among the caller's shops"}})
async def campaign_report(
        campaign_id: str, deps: AppDeps, operator: Operator,
        report_format: Literal["csv", "html"] = Query(
            "csv", alias="format",
            description="csv: one row per consignee; html: 召回计划实施情况报告 and the "
                        "21 CFR 7.53 status report")) -> StreamingResponse:
    """A campaign's report: every consignee with their notices, answer, returned units and
    refund, the totals of those rows, and whether the campaign's audit trail verifies."""
    repo = deps.campaigns
    campaign = await run_in_threadpool(_campaign, repo, operator, campaign_id)
    operator.require(Permission.EXPORT)
    await run_in_threadpool(record_report, deps.api_services, campaign.id, operator.actor,
                            report_format)
    name = f"recall-report-{campaign.id}"
    if report_format == "csv":
        # The rows are read a page at a time as the response is sent (Starlette runs this
        # iterator in a worker thread): 50,000 consignees never sit in memory at once.
        return StreamingResponse(
            csv_chunks(iter_rows(repo, campaign.id)), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    report = await run_in_threadpool(build_report, repo, campaign.id,
                                     at=datetime.now(UTC), by=operator.actor)
    return StreamingResponse(
        _encoded(html_chunks(report)), media_type="text/html; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{name}.html"',
                 "Content-Security-Policy": HTML_POLICY})
