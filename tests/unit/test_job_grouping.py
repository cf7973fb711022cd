"""A case's steps handed out together become one RQ job (`workers.queue.by_case`): named
after its first step that is not a notification, the rest passed on in order, the
notification last; a campaign's steps stay one job each."""

from __future__ import annotations

from refundbridge.core.campaigns import CampaignStep
from refundbridge.core.model import Step
from refundbridge.store.outbox import Work
from refundbridge.workers.queue import ChainedWork, by_case, job_args, job_id


def test_one_case_s_rows_are_one_job_named_after_its_first_real_step() -> None:
    rows = [Work(7, "rc_a", Step.NOTIFY), Work(8, "rc_a", Step.STOCK),
            Work(9, "rc_b", Step.EVALUATE), Work(10, "rc_a", Step.REFUND)]
    jobs = by_case(rows)
    assert [(first.outbox_id, [w.outbox_id for w in rest]) for first, rest in jobs] == [
        (8, [10, 7]), (9, [])]
    first, rest = jobs[0]
    assert job_id(first) == "stock-rc_a-8"
    assert job_args(first, rest) == ("rc_a", "stock", [(10, "refund"), (7, "notify")])
    # A lone step keeps the arguments every queued job had before.
    assert job_args(*jobs[1]) == ("rc_b", "evaluate")


def test_a_message_handed_out_between_steps_still_goes_last() -> None:
    rows = [Work(1, "rc_a", Step.STOCK), Work(2, "rc_a", Step.NOTIFY),
            Work(3, "rc_a", Step.REFUND), Work(4, "rc_a", Step.NOTIFY)]
    assert [(f.outbox_id, [w.outbox_id for w in r]) for f, r in by_case(rows)] == [
        (1, [3, 2, 4])]


def test_a_case_with_only_messages_is_one_notify_job() -> None:
    jobs = by_case([Work(1, "rc_a", Step.NOTIFY), Work(2, "rc_a", Step.NOTIFY)])
    assert [(f.outbox_id, [w.outbox_id for w in r]) for f, r in jobs] == [(1, [2])]


def test_a_campaign_s_steps_stay_one_job_each() -> None:
    rows = [Work(1, "camp_1", CampaignStep.NOTIFY), Work(2, "camp_1", CampaignStep.NOTIFY),
            Work(3, "camp_1", CampaignStep.REMIND)]
    assert [(f.outbox_id, r) for f, r in by_case(rows)] == [(1, []), (2, []), (3, [])]


def test_the_chain_runs_its_own_next_step_then_the_handed_steps_then_one_notify() -> None:
    chained = ChainedWork()
    chained.take([Work(10, "rc_a", Step.REFUND), Work(7, "rc_a", Step.NOTIFY),
                  Work(11, "rc_a", Step.WRITE_BACK)])
    chained.next_steps.append(Work(12, "rc_a", Step.STOCK))
    chained.held.append(Work(13, "rc_a", Step.NOTIFY))
    order = []
    while chained:
        order.append(chained.pop().outbox_id)
    assert order == [12, 10, 11, 7]  # one notify of the case completes the other
    chained.take([Work(20, "rc_b", Step.REFUND)])
    assert [w.outbox_id for w in chained.left()] == [20]
