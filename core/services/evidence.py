"""Exporting evidence: every export is itself recorded on each case it covers.

The `evidence_exported` event is appended (with the operator, the scope and when) and
committed before the package is built, so the package holds the record of its own making
and the live chain's head moves on: a later package of the same case shows who exported
what before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from refundbridge.core.audit import AuditEvent
from refundbridge.core.errors import ConcurrencyConflict, InvalidRequest, NotFound
from refundbridge.core.evidence import (
    EXPORT_EVENT,
    CampaignRecord,
    CaseRecord,
    Scope,
    build_package,
)
from refundbridge.core.services.common import Services
from refundbridge.core.services.signals import lot_signals

# A lot touches a handful of cases, a recall a few hundred; more than this is not one
# package a person reads.
MAX_CASES = 2000


class EvidenceSource(Protocol):
    """The read side a package is built from (store/evidence.py)."""

    def case_detail(self, case_id: str) -> Mapping[str, Any]: ...

    def case_events(self, case_id: str) -> list[AuditEvent]: ...


def record_export(svc: Services, case_ids: Sequence[str], actor: str, scope: Scope) -> None:
    """Append `evidence_exported` to each case, in one transaction (cases locked in id
    order, so two exports of overlapping lots cannot deadlock)."""
    data = {**scope.as_json(), "cases": len(case_ids)}
    for attempt in range(3):
        try:
            with svc.uow() as uow:
                at = svc.clock()
                for case_id in sorted(set(case_ids)):
                    case = uow.cases.get(case_id)
                    case.record(EXPORT_EVENT, actor=actor, at=at, from_state=case.state,
                                to_state=case.state, data=data)
                uow.commit()
            return
        except ConcurrencyConflict:
            if attempt == 2:
                raise


def export_evidence(svc: Services, source: EvidenceSource, case_ids: Sequence[str],
                    actor: str, scope: Scope) -> bytes:
    """The evidence package (ZIP bytes) of `case_ids`, its export recorded on each first.
    The caller has checked that `actor` may export and may see every one of these cases."""
    ids = list(dict.fromkeys(case_ids))
    campaigns = _lot_campaigns(svc, scope, actor)
    signals = lot_signals(svc, scope, actor)
    if not ids and not campaigns and not signals:
        raise NotFound(f"no case for {scope.describe()}")
    if len(ids) > MAX_CASES:
        raise InvalidRequest(scope.kind, f"{scope.describe()} touches {len(ids)} cases; "
                             f"more than {MAX_CASES} do not go into one package")
    if ids:
        record_export(svc, ids, actor, scope)
    records = [CaseRecord(case_id, source.case_detail(case_id), source.case_events(case_id))
               for case_id in ids]
    return build_package(records, scope=scope, created_at=svc.clock(), created_by=actor,
                         campaigns=campaigns, signals=signals)


def _lot_campaigns(svc: Services, scope: Scope, actor: str) -> list[CampaignRecord]:
    """The lot's recall campaigns, each with the export recorded on its own trail first."""
    repo = svc.campaigns
    if scope.kind != "lot" or repo is None or scope.shop_id is None or scope.lot is None:
        return []
    records = []
    for found in repo.for_lot(scope.shop_id, scope.lot):
        for _ in range(5):
            campaign = repo.get(found.id)
            campaign.record(EXPORT_EVENT, svc.clock(), actor, scope.as_json())
            try:
                repo.save(campaign)
            except ConcurrencyConflict:
                continue
            break
        else:
            raise ConcurrencyConflict(f"campaign {found.id}: too many writers at once")
        summary = {"id": campaign.id, "shop": campaign.shop_id, "state": campaign.state.value,
                   "notice": campaign.notice.as_json(),
                   "notice_due": campaign.notice.notice_due.isoformat(),
                   "quarantine": {"document": campaign.quarantine_document,
                                  "units": campaign.quarantined_units},
                   "counts": repo.counts(campaign.id).as_json()}
        records.append(CampaignRecord(campaign.id, summary, repo.events(campaign.id)))
    return records
