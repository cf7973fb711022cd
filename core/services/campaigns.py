"""Recall campaigns: open one from a notice, walk the ERP, stop the stock, tell everyone,
remind, take acknowledgements, open the recall cases, close.

Each step is a job (`CAMPAIGN_HANDLERS`) that does one bounded batch and asks for another run
when more is left, so 50,000 consignees are many short jobs, not one long one. Every step is
idempotent: the walk merges pages by ERP line, the quarantine carries a key derived from the
campaign, a consignee is claimed before they are told and never told twice
(`campaign_notices`), and a recall case goes through the inbox under a key derived from the
consignee (`campaign_answers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from refundbridge.core.campaigns import (
    PAGE_SIZE,
    CampaignState,
    CampaignStep,
    RecallCampaign,
    RecallNotice,
    merge_page,
)
from refundbridge.core.errors import (
    ConfigError,
    InvalidRequest,
    NotFound,
    TransientProviderError,
)
from refundbridge.core.phones import to_e164
from refundbridge.core.ports import QuarantineOrder
from refundbridge.core.services.campaign_answers import (
    CAMPAIGN_SOURCE,
    AcknowledgementRecorded,
    CampaignClosed,
    acknowledge,
    open_recall_cases,
)
from refundbridge.core.services.campaign_common import campaign_repo, save_campaign
from refundbridge.core.services.campaign_notices import (
    consignee_locale,
    notify_consignees,
    recall_message,
    remind_consignees,
)
from refundbridge.core.services.common import Services, log


@dataclass(frozen=True, slots=True)
class CampaignOpened:
    campaign_id: str
    created: bool


# ------------------------------------------------------------------ opening


def open_campaign(svc: Services, shop_id: str, notice: RecallNotice, actor: str, *,
                  capa_id: str | None = None) -> CampaignOpened:
    """Open the shop's campaign for this notice; the same reference again changes nothing
    (`created` False), whatever the second notice says. `capa_id`: the CAPA record it is
    escalated from, kept on the campaign and in its trail."""
    if svc.status_links is None:
        # Every notice carries the consignee's acknowledgement link; without the key that
        # signs them, nobody could answer.
        raise ConfigError("status_link_secret", "is needed for recall campaigns: every "
                                                "notice carries an acknowledgement link")
    gateways = svc.gateways(shop_id)
    campaign = RecallCampaign.open(shop_id, notice, actor=actor, at=svc.clock(),
                                   can_quarantine=gateways.quarantine is not None)
    if capa_id is not None:
        campaign.capa_id = capa_id
        campaign.record("from_capa", svc.clock(), actor, {"capa_id": capa_id})
    if gateways.consignees is None:
        # Nobody can be found for it: said in the trail, and the walk ends at once.
        campaign.record("consignees_unavailable", svc.clock(), "system", {
            "reason": "the shop's ERP connector cannot list consignees (erp.consignees)"})
    created = campaign_repo(svc).add(campaign)
    return CampaignOpened(campaign.id, created)


# ------------------------------------------------------------------ the ERP walk


def identify_consignees(svc: Services, campaign_id: str) -> None:
    """Read the next page of consignees and merge it; ask for the next page or, after the
    last, for the notices."""
    repo = campaign_repo(svc)
    campaign = repo.get(campaign_id)
    if campaign.state is not CampaignState.IDENTIFYING:
        repo.save(campaign, done=CampaignStep.IDENTIFY)
        return
    lookup = svc.gateways(campaign.shop_id).consignees
    cursor = campaign.cursor
    if lookup is None:
        found, new, next_cursor = 0, 0, None
    else:
        page = lookup.consignees(campaign.notice.scope, cursor, PAGE_SIZE)
        merged = merge_page(page.consignees)
        region = svc.policy(campaign.shop_id).phone_region
        texting = svc.gateways(campaign.shop_id).sms is not None
        phones = {key: (_e164(c.phone, region) if texting else None)
                  for key, c in merged.items()}
        new = repo.merge_consignees(campaign_id, list(merged.values()), phones)
        found, next_cursor = len(page.consignees), page.cursor

    def advance(c: RecallCampaign) -> bool:
        if c.state is not CampaignState.IDENTIFYING or c.cursor != cursor:
            return False  # another job read this page and moved on
        c.page_read(next_cursor, found, new, svc.clock())
        return True

    save_campaign(svc, campaign_id, CampaignStep.IDENTIFY, advance)


def _e164(phone: str | None, region: str | None) -> str | None:
    if not phone:
        return None
    try:
        return to_e164(phone, region)
    except InvalidRequest:
        return None  # the ERP's number is not one: email only, and the console shows it


# ------------------------------------------------------------------ quarantine


def quarantine_stock(svc: Services, campaign_id: str) -> None:
    """Stop the stock on hand: one move into quarantine, under a key of the campaign. The
    claim is saved first, so two jobs racing never both ask the ERP to move stock."""
    repo = campaign_repo(svc)
    campaign = repo.get(campaign_id)
    quarantine = svc.gateways(campaign.shop_id).quarantine
    if campaign.quarantine_document is not None or quarantine is None:
        repo.save(campaign, done=CampaignStep.QUARANTINE)
        return
    now = svc.clock()
    claimed = campaign.quarantine_claimed_at
    if claimed is not None and now - claimed < svc.booking_lease:
        raise TransientProviderError("campaigns", "another job is moving the stock")
    campaign.quarantine_claimed_at = now
    repo.save(campaign)  # a ConcurrencyConflict here: another job claimed it first
    result = quarantine.quarantine_stock(QuarantineOrder(
        idempotency_key=f"{campaign.id}.quarantine", reference=campaign.notice.reference,
        scope=campaign.notice.scope))
    moved = [{"sku": u.sku, "quantity": u.quantity, "lot": u.lot, "serial": u.serial,
              "from": u.source} for u in result.units]

    def record(c: RecallCampaign) -> bool:
        c.stock_quarantined(result.document, sum(u.quantity for u in result.units), moved,
                            svc.clock())
        return True

    save_campaign(svc, campaign_id, CampaignStep.QUARANTINE, record)


def campaign_tick(svc: Services, campaign_ids: list[str]) -> list[str]:
    """The reconciler's round over open campaigns: ask for the runs whose work is due and
    has no job (reminders due, notices a dead job left, recall cases to open). A step that
    has an open outbox row is not asked twice. Returns the campaigns asked."""
    repo = campaign_repo(svc)
    now = svc.clock()
    asked = []
    for campaign_id in campaign_ids:
        steps = []
        if repo.due_reminders(campaign_id, now):
            steps.append(CampaignStep.REMIND)
        # Notices left (a dead job's claims), or none left but the campaign not yet moved on
        # (two batches that ended together each saw the other's consignees still open).
        if repo.unnotified(campaign_id) or (
                repo.get(campaign_id).state is CampaignState.NOTIFYING):
            steps.append(CampaignStep.NOTIFY)
        if repo.awaiting_cases(campaign_id, 1):
            steps.append(CampaignStep.OPEN_CASES)
        if not steps:
            continue

        def ask(c: RecallCampaign, steps: list[CampaignStep] = steps) -> bool:
            if not c.is_open:
                return False
            c.new_steps.extend(steps)
            return True

        if save_campaign(svc, campaign_id, None, ask) is not None:
            asked.append(campaign_id)
    return asked


# ------------------------------------------------------------------ closing


def close_campaign(svc: Services, campaign_id: str, actor: str, note: str) -> RecallCampaign:
    """A person closes the campaign after the effectiveness check; the totals go in the
    trail."""
    if not note.strip():
        raise InvalidRequest("note", "say why the campaign may close: the effectiveness "
                                     "check's result")
    if len(note) > 2000:
        raise InvalidRequest("note", "is longer than 2000 characters")
    counts = campaign_repo(svc).counts(campaign_id).as_json()

    def close(c: RecallCampaign) -> bool:
        c.close(actor, note.strip(), svc.clock(), {"totals": counts})
        return True

    closed = save_campaign(svc, campaign_id, None, close)
    assert closed is not None
    return closed


def record_report(svc: Services, campaign_id: str, actor: str, report_format: str) -> None:
    """Who took the campaign's report, and when: on its trail before the report is built,
    so the report's own head names its making, as an evidence export does."""

    def record(c: RecallCampaign) -> bool:
        c.record("report_exported", svc.clock(), actor, {"format": report_format})
        return True

    save_campaign(svc, campaign_id, None, record)


def fail_campaign_step(svc: Services, campaign_id: str, step: CampaignStep,
                       message: str) -> None:
    """A step given up on (a permanent error, or too many tries): said in the trail, for a
    person to see on the campaign's page."""
    log.error("campaign %s: %s failed: %s", campaign_id, step.value, message)

    def record(c: RecallCampaign) -> bool:
        c.record("step_failed", svc.clock(), "system", {"step": step.value,
                                                         "error": message[:500]})
        if step is CampaignStep.IDENTIFY:
            c.walk_given_up(message, svc.clock())
        return True

    try:
        save_campaign(svc, campaign_id, step, record)
    except NotFound:
        log.error("campaign %s is gone; nothing to record", campaign_id)


CAMPAIGN_HANDLERS: dict[CampaignStep, Callable[[Services, str], None]] = {
    CampaignStep.IDENTIFY: identify_consignees,
    CampaignStep.QUARANTINE: quarantine_stock,
    CampaignStep.NOTIFY: notify_consignees,
    CampaignStep.REMIND: remind_consignees,
    CampaignStep.OPEN_CASES: open_recall_cases,
}

__all__ = [
    "CAMPAIGN_HANDLERS", "CAMPAIGN_SOURCE", "AcknowledgementRecorded", "CampaignClosed",
    "CampaignOpened", "acknowledge", "campaign_tick", "close_campaign", "consignee_locale",
    "fail_campaign_step", "identify_consignees", "notify_consignees", "open_campaign",
    "open_recall_cases", "quarantine_stock", "recall_message", "record_report",
    "remind_consignees",
]
