"""An SMTP server that takes the whole message and then never answers it: the message may
have been delivered, so it is not sent again (`DeliveryUncertain`); a server lost before the
body is an ordinary transient failure, retried."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from refundbridge.connectors.base import RetryPolicy
from refundbridge.core.errors import DeliveryUncertain, TransientProviderError
from refundbridge.core.model import NotificationKind
from tests.connectors.test_smtp import notifier, outgoing


class _Session(socketserver.StreamRequestHandler):
    """Just enough SMTP; `server.drop_at` says where the line goes dead: "body" (after the
    message's end-of-data, before the 250) or "rcpt" (before the body)."""

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, LossyServer)
        server.sessions += 1
        self.wfile.write(b"220 lossy ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 lossy\r\n")
            elif verb == b"MAIL":
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"RCPT":
                if server.drop_at == "rcpt":
                    return
                self.wfile.write(b"250 ok\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go on\r\n")
                while (body := self.rfile.readline()) and body != b".\r\n":
                    pass
                server.bodies += 1
                if server.drop_at == "body":
                    return  # hang up: the client never hears the 250
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


class LossyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drop_at: str) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.drop_at = drop_at
        self.sessions = 0
        self.bodies = 0


@contextmanager
def lossy(drop_at: str) -> Iterator[LossyServer]:
    server = LossyServer(drop_at)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_message_whose_answer_is_lost_is_not_sent_again() -> None:
    with lossy("body") as server:
        smtp = notifier(server.server_address[1],
                        retry=RetryPolicy(attempts=3, initial_wait=0, max_wait=0))
        with pytest.raises(DeliveryUncertain) as raised:
            smtp.send(outgoing(NotificationKind.APPROVED))
        assert "never came" in raised.value.message
        assert (server.sessions, server.bodies) == (1, 1)


def test_a_server_lost_before_the_body_is_retried() -> None:
    with lossy("rcpt") as server:
        smtp = notifier(server.server_address[1],
                        retry=RetryPolicy(attempts=3, initial_wait=0, max_wait=0))
        with pytest.raises(TransientProviderError):
            smtp.send(outgoing(NotificationKind.APPROVED))
        assert (server.sessions, server.bodies) == (3, 0)


def test_a_server_that_answers_delivers_once() -> None:
    with lossy("never") as server:
        smtp = notifier(server.server_address[1])
        smtp.send(outgoing(NotificationKind.APPROVED))
        assert (server.sessions, server.bodies) == (1, 1)


def test_nothing_listens_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = notifier(port, retry=RetryPolicy(attempts=2, initial_wait=0, max_wait=0))
    with pytest.raises(TransientProviderError):
        smtp.send(outgoing(NotificationKind.APPROVED))
