"""The only module that talks SMTP. Sorts every failure into transient or permanent."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import NoReturn

from refundbridge.connectors.smtp.settings import SmtpSettings
from refundbridge.core.errors import PermanentProviderError, TransientProviderError


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


class SmtpClient:
    def __init__(self, settings: SmtpSettings, connector: str) -> None:
        self._settings = settings
        self._connector = connector

    def send(self, email: EmailMessage) -> None:
        """Deliver one message over a fresh connection (one attempt; the caller retries).

        Transient: connection refused or dropped, timeouts, 4xx replies. Permanent: 5xx
        replies (with the server's text), and a server lacking a feature we need.
        """
        try:
            refused = self._deliver(email)
        except smtplib.SMTPRecipientsRefused as exc:
            # not an SMTPResponseException: it carries one reply per recipient
            self._raise_for_replies(exc.recipients, exc)
        except smtplib.SMTPResponseException as exc:
            self._raise_for_reply(exc.smtp_code, exc.smtp_error, exc)
        except smtplib.SMTPServerDisconnected as exc:
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
            raise TransientProviderError(
                self._connector, f"{type(exc).__name__}: {exc}"
            ) from exc
        if refused:  # only when some of several recipients were refused
            self._raise_for_replies(refused, None)

    def _deliver(self, email: EmailMessage) -> dict[str, tuple[int, bytes]]:
        s = self._settings
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.username is not None and s.password is not None:
                smtp.login(s.username, s.password.get_secret_value())
            # No mail_options: for a non-ASCII address smtplib itself asks for SMTPUTF8 (and
            # refuses if the server lacks it); passing it too would send the option twice.
            return smtp.send_message(email)

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
