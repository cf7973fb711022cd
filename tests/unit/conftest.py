"""Fixtures the unit tests share."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `REFUNDBRIDGE_*` variable of the caller's reaches the settings under test."""
    for name in list(os.environ):
        if name.upper().startswith("REFUNDBRIDGE_"):
            monkeypatch.delenv(name)
