"""What the campaign use cases share: the repository, and saving a campaign under its
version check (read again and re-applied when another writer won)."""

from __future__ import annotations

from collections.abc import Callable

from refundbridge.core.campaigns import CampaignRepository, CampaignStep, RecallCampaign
from refundbridge.core.errors import ConcurrencyConflict, NotSupported
from refundbridge.core.services.common import Services


def campaign_repo(svc: Services) -> CampaignRepository:
    if svc.campaigns is None:  # pragma: no cover - every composition root sets it
        raise NotSupported("campaigns", "recall campaigns")
    return svc.campaigns


def save_campaign(svc: Services, campaign_id: str, step: CampaignStep | None,
           change: Callable[[RecallCampaign], bool]) -> RecallCampaign | None:
    """Apply `change` to the campaign and save it; on a lost version race read it again and
    apply `change` to that. `change` returns False when there is nothing (left) to do."""
    repo = campaign_repo(svc)
    for _ in range(5):
        campaign = repo.get(campaign_id)
        if not change(campaign):
            if step is not None:
                repo.save(campaign, done=step)
            return None
        try:
            repo.save(campaign, done=step)
        except ConcurrencyConflict:
            continue
        return campaign
    raise ConcurrencyConflict(f"campaign {campaign_id}: too many writers at once")
