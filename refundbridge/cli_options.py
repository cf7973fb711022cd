"""Options every `refundbridge` command group shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    # No envvar here: load_settings reads REFUNDBRIDGE_CONFIG itself, so an error about the
    # file names where its path came from.
    typer.Option("--config", "-c", help="TOML settings file (default: $REFUNDBRIDGE_CONFIG)"),
]
