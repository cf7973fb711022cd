"""`refundbridge demo`: the whole system in one process, on embedded defaults.

The shop is a small medical-device pharmacy whose policy flags its awkward SKUs
(`catalogue`). The demo starts the embedded stack (`stack`: SQLite, fakeredis, an RQ worker
thread, the real API under uvicorn and an SMTP server, all on 127.0.0.1, with the sandbox
connectors), then sends scripted compliance scenarios (`scripted`, written as data) mixed
with ordinary requests through the real webhook path, playing the warehouse and the reviewer
(`driver`). It exits non-zero if a case is stuck or a scenario did not end where the rules say
it should (`report`): the demo doubles as an end-to-end check of the rule set.
"""

from refundbridge.demo.catalogue import recall_csv, shop_policy
from refundbridge.demo.driver import (
    console_accounts,
    inspections,
    review_decision,
    run,
    run_demo,
    send_request,
)
from refundbridge.demo.report import DemoResult, Findings, ScenarioResult
from refundbridge.demo.scripted import Scenario, demo_requests, scenarios
from refundbridge.demo.stack import Mailbox, forget_demo_database, is_demo_database

__all__ = [
    "DemoResult",
    "Findings",
    "Mailbox",
    "Scenario",
    "ScenarioResult",
    "console_accounts",
    "demo_requests",
    "forget_demo_database",
    "inspections",
    "is_demo_database",
    "recall_csv",
    "review_decision",
    "run",
    "run_demo",
    "scenarios",
    "send_request",
    "shop_policy",
]
