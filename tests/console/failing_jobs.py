"""Job functions that fail by design, for the Jobs page's tests (RQ imports them by name)."""

from __future__ import annotations


def provider_away(case_id: str, step: str) -> None:
    raise TimeoutError(f"the ERP did not answer for {case_id} ({step}) in 10 s")


def never_runs(case_id: str, step: str) -> None:  # pragma: no cover - deferred only
    raise AssertionError("a deferred job ran")
