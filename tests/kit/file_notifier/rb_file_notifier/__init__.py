"""`file_notifier`: appends every customer message to a JSON-lines file (a mail robot's
outbox, say). Enabled in a shop with `notifier = "file_notifier"` and
`[shops.<id>.file_notifier] path = "…"`."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import ClassVar

from refundbridge.connectors.base import ConnectorBase, ConnectorContext, ConnectorSettings
from refundbridge.core.ports import Capability, OutgoingMessage, Role


class FileNotifierSettings(ConnectorSettings):
    path: Path


class FileNotifier(ConnectorBase):
    name: ClassVar[str] = "file_notifier"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_EMAIL})
    Settings: ClassVar[type[ConnectorSettings]] = FileNotifierSettings


    settings: FileNotifierSettings

    def __init__(self, settings: FileNotifierSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> None:
        line = json.dumps({"message_id": message.message_id, "case_id": message.case_id,
                           "kind": message.kind.value, "email": message.email,
                           "locale": message.locale}, ensure_ascii=False)
        with self._lock, self.settings.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
