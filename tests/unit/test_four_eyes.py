"""The review desk on the aggregate: claiming a case, and four eyes (a proposal that a second
reviewer confirms or sends back, never its own author)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from refundbridge.core.audit import verify_chain
from refundbridge.core.errors import DomainError, IllegalTransition, InvalidRequest
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import (
    ClaimedByAnother,
    Decision,
    FourEyesReason,
    NoProposal,
    Obligation,
    ObligationKind,
    Outcome,
    ProposalPending,
    RefundCase,
    ReviewProposal,
    RuleResult,
    SameReviewer,
)
from refundbridge.core.policy import ShopPolicy
from refundbridge.core.services import four_eyes_reasons
from tests.unit.builders import at, open_case

LI, WANG, ZHOU = "operator:li.na", "operator:wang", "operator:zhou"


def in_review(*rules: RuleResult, obligations: tuple[Obligation, ...] = ()) -> RefundCase:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(Decision(Outcome.REVIEW, case.requested,
                         rules or (RuleResult("R20", Outcome.REVIEW, "over the limit"),),
                         "rules", at(2), obligations=obligations))
    return case


def proposal(by: str = LI, outcome: Outcome = Outcome.APPROVE, minute: int = 5
             ) -> ReviewProposal:
    return ReviewProposal(outcome, by, at(minute), "receipt checked", "款项将退回",
                          (FourEyesReason.AMOUNT,))


def names(case: RefundCase) -> list[str]:
    return [e.name for e in case.new_events]


# ------------------------------------------------------------------ claiming


def test_a_claim_names_the_assignee_and_is_recorded() -> None:
    case = in_review()
    case.claim(LI, at(3))
    assert case.assignee == LI
    assert case.new_events[-1].name == "claimed"
    assert case.new_events[-1].data == {"assignee": LI, "previous": None}
    case.claim(LI, at(4))  # claiming one's own case again changes nothing
    assert names(case).count("claimed") == 1


def test_another_reviewers_claim_is_taken_over_only_on_purpose() -> None:
    case = in_review()
    case.claim(LI, at(3))
    with pytest.raises(ClaimedByAnother, match=r"claimed by operator:li\.na"):
        case.claim(WANG, at(4))
    assert case.assignee == LI
    case.claim(WANG, at(5), take_over=True)
    assert case.assignee == WANG
    assert case.new_events[-1].data == {"assignee": WANG, "previous": LI}


def test_only_the_assignee_releases_a_case() -> None:
    case = in_review()
    case.claim(LI, at(3))
    with pytest.raises(ClaimedByAnother):
        case.release(WANG, at(4))
    case.release(LI, at(5))
    assert case.assignee is None
    assert case.new_events[-1].name == "released"
    assert case.new_events[-1].data == {"previous": LI}
    assert verify_chain(case.new_events).verifies


def test_a_closed_case_cannot_be_claimed() -> None:
    case = in_review()
    case.decide(Decision(Outcome.DENY, case.requested, (), LI, at(3), "no"))
    with pytest.raises(DomainError, match="denied"):
        case.claim(LI, at(4))


# ------------------------------------------------------------------ when four eyes apply


def test_four_eyes_by_amount_per_currency() -> None:
    policy = ShopPolicy(four_eyes_above={"CNY": Decimal("300")})
    assert four_eyes_reasons(policy, in_review()) == (FourEyesReason.AMOUNT,)  # 398.00 CNY
    assert four_eyes_reasons(ShopPolicy(four_eyes_above={"CNY": Decimal("398")}),
                             in_review()) == ()  # at the limit is not above it
    assert four_eyes_reasons(ShopPolicy(four_eyes_above={"USD": Decimal("1")}),
                             in_review()) == ()  # another currency's limit
    assert four_eyes_reasons(ShopPolicy(), in_review()) == ()  # the default: never by amount


def test_a_possible_adverse_event_always_needs_four_eyes() -> None:
    by_rule = in_review(RuleResult("R14", Outcome.REVIEW, "possible injury"))
    assert four_eyes_reasons(ShopPolicy(), by_rule) == (FourEyesReason.ADVERSE_EVENT,)
    report = Obligation(ObligationKind.ADVERSE_EVENT_REPORT, at(0).date(), "report", "R14")
    by_obligation = in_review(obligations=(report,))
    assert by_obligation.possible_adverse_event
    policy = ShopPolicy(four_eyes_above={"CNY": Decimal("100")})
    assert four_eyes_reasons(policy, by_obligation) == (FourEyesReason.AMOUNT,
                                                       FourEyesReason.ADVERSE_EVENT)
    assert not in_review(RuleResult("R14", Outcome.PASS, "no injury")).possible_adverse_event


# ------------------------------------------------------------------ propose, confirm, reject


def test_a_proposal_keeps_the_case_in_review() -> None:
    case = in_review()
    case.propose_review(proposal())
    assert case.state is CaseState.AWAITING_REVIEW
    assert case.proposal == proposal()
    event = case.new_events[-1]
    assert event.name == "review_proposed" and event.actor == LI
    assert event.data["outcome"] == "approve" and event.data["reasons"] == ["amount"]
    assert event.data["replaces"] is False


def test_its_author_may_replace_a_proposal_but_nobody_else() -> None:
    case = in_review()
    case.propose_review(proposal())
    case.propose_review(proposal(outcome=Outcome.DENY, minute=6))
    assert case.proposal is not None and case.proposal.outcome is Outcome.DENY
    assert case.new_events[-1].data["replaces"] is True
    with pytest.raises(ProposalPending, match=r"operator:li\.na proposed"):
        case.propose_review(proposal(by=WANG))


def test_only_a_case_in_review_takes_a_proposal() -> None:
    case = open_case()
    with pytest.raises(IllegalTransition):
        case.propose_review(proposal())


def test_the_author_cannot_confirm_or_reject_their_own_proposal() -> None:
    case = in_review()
    case.propose_review(proposal())
    with pytest.raises(SameReviewer, match="another reviewer must confirm"):
        case.proposal_for(LI)
    with pytest.raises(SameReviewer):
        case.reject_proposal(LI, at(6), "changed my mind")
    assert case.proposal is not None
    assert case.proposal_for(WANG) == proposal()


def test_a_confirmed_proposal_becomes_the_decision_naming_both() -> None:
    case = in_review()
    case.propose_review(proposal())
    chosen = case.proposal_for(WANG)
    case.decide(Decision(chosen.outcome, case.requested, (), WANG, at(7),
                         chosen.internal_note, customer_message=chosen.customer_message,
                         proposed_by=chosen.proposed_by, confirm_note="agreed"))
    assert case.state is CaseState.REFUNDING and case.proposal is None  # refund only
    decided = next(e for e in case.new_events if e.name == "approve")
    assert decided.actor == WANG
    assert decided.data["decided_by"] == WANG and decided.data["proposed_by"] == LI
    assert decided.data["confirm_note"] == "agreed"
    assert verify_chain(case.new_events).verifies


def test_a_rejected_proposal_is_cleared_and_needs_a_reason() -> None:
    case = in_review()
    case.propose_review(proposal())
    with pytest.raises(InvalidRequest) as refused:
        case.reject_proposal(WANG, at(6), "  ")
    assert refused.value.field == "internal_note" and case.proposal is not None
    case.reject_proposal(WANG, at(7), "the receipt is for another order")
    assert case.proposal is None and case.state is CaseState.AWAITING_REVIEW
    event = case.new_events[-1]
    assert event.name == "review_rejected" and event.actor == WANG
    assert event.data["proposal"]["proposed_by"] == LI
    # Sent back, anyone may propose again (the first author too).
    case.propose_review(proposal(by=ZHOU, minute=8))
    assert case.proposal is not None and case.proposal.proposed_by == ZHOU


def test_nothing_to_confirm_without_a_proposal() -> None:
    with pytest.raises(NoProposal):
        in_review().proposal_for(WANG)
