"""A real `refundbridge worker` process whose only fake is Stripe's HTTP API (respx).

    python -m tests.integration.worker_process CONFIG.toml STRIPE_STATE.json MARKER [--hang]

With --hang, the first refund is paid by the fake Stripe and then the answer never comes:
the process is stuck mid-call, as a worker is when it gets killed there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import respx

from refundbridge.bootstrap import bootstrap
from refundbridge.config.settings import load_settings
from refundbridge.workers.runner import run_worker
from tests.fakes.stripe import StripeFake


def main() -> None:
    config, state, marker = sys.argv[1:4]
    hang = "--hang" in sys.argv
    fake = StripeFake(Path(state))
    if hang:
        def stall(refund: dict[str, Any]) -> None:
            Path(marker).write_text(refund["id"])
            time.sleep(600)

        fake.after_pay.append(stall)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        fake.install(router)
        container = bootstrap(load_settings(config))
        run_worker(container, burst=not hang, reconcile_every=0)


if __name__ == "__main__":
    main()
