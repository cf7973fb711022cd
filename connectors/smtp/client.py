"""The only module that talks SMTP. Sorts every failure into transient or permanent."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

from refundbridge.connectors.smtp.settings import SmtpSettings
from refundbridge.core.errors import (
    DeliveryUncertain,
    PermanentProviderError,
    TransientProviderError,
)

END_OF_DATA = b"\r\n.\r\n"


class _Smtp(smtplib.SMTP):
    """Knows when the whole body has gone out: a failure after that point is the server's
    answer lost, not the message."""

    body_sent = False

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(END_OF_DATA):
            self.body_sent = True


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class SmtpClient:
    def __init__(self, settings: SmtpSettings, connector: str) -> None:
        self._settings = settings
        self._connector = connector

    def send(self, email: EmailMessage) -> None:
        """Deliver one message over a fresh connection (one attempt; the caller retries).

        Transient: connection refused or dropped, timeouts, 4xx replies. Permanent: 5xx
        replies (with the server's text), and a server lacking a feature we need. Uncertain
        (`DeliveryUncertain`): the connection failed after the whole body was sent, before
        the server's answer to it.
        """
        smtp = _Smtp(timeout=self._settings.timeout)
        try:
            refused = self._deliver(smtp, email)
        except smtplib.SMTPRecipientsRefused as exc:
            # not an SMTPResponseException: it carries one reply per recipient
            self._raise_for_replies(exc.recipients, exc)
        except smtplib.SMTPResponseException as exc:
            self._raise_for_reply(exc.smtp_code, exc.smtp_error, exc)
        except smtplib.SMTPServerDisconnected as exc:
            self._raise_if_answer_lost(smtp, exc)
            raise TransientProviderError(self._connector, f"disconnected: {exc}") from exc
        except smtplib.SMTPException as exc:
            # SMTPNotSupportedError and friends: no STARTTLS, no AUTH, no SMTPUTF8 for a
            # non-ASCII address. A retry meets the same server.
            raise PermanentProviderError(self._connector, str(exc)) from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentProviderError(
                self._connector, f"TLS certificate not trusted: {exc}"
            ) from exc
        except OSError as exc:  # refused, unreachable, timed out, TLS handshake cut
            self._raise_if_answer_lost(smtp, exc)
            raise TransientProviderError(
                self._connector, f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            smtp.close()
        if refused:  # only when some of several recipients were refused
            self._raise_for_replies(refused, None)

    def _raise_if_answer_lost(self, smtp: _Smtp, exc: BaseException) -> None:
        if smtp.body_sent:
            raise DeliveryUncertain(
                self._connector, f"the server took the whole message but its answer never "
                                 f"came ({type(exc).__name__}: {exc})") from exc

    def _deliver(self, smtp: _Smtp, email: EmailMessage) -> dict[str, tuple[int, bytes]]:
        s = self._settings
        smtp.connect(s.host, s.port)
        if s.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if s.username is not None and s.password is not None:
            smtp.login(s.username, s.password.get_secret_value())
        # No mail_options: for a non-ASCII address smtplib itself asks for SMTPUTF8 (and
        # refuses if the server lacks it); passing it too would send the option twice.
        refused = smtp.send_message(email)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()  # the message is accepted; a lost goodbye changes nothing
        return refused

    def _raise_for_replies(
        self, replies: dict[str, tuple[int, bytes]], cause: BaseException | None
    ) -> NoReturn:
        # Permanent if any recipient is refused for good: retrying would not reach them.
        address, (code, text) = max(replies.items(), key=lambda item: item[1][0])
        self._raise_for_reply(code, text, cause, address)

    def _raise_for_reply(
        self,
        code: int,
        text: bytes | str,
        cause: BaseException | None,
        address: str | None = None,
    ) -> NoReturn:
        about = f" for {address}" if address else ""
        message = f"{code} {_text(text)}{about}"
        if code >= 500:
            raise PermanentProviderError(self._connector, message, code=str(code)) from cause
        raise TransientProviderError(self._connector, message) from cause
