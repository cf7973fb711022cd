"""WeChat Pay API v3 cryptography, all of it done by the `cryptography` package (RSA keys,
signing and verifying through `connectors.rsa_signing`, shared with Alipay).

- Requests are signed by the merchant: RSA-SHA256 (PKCS#1 v1.5) over
  ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``, sent as the `Authorization` header.
- Answers and notifications are signed by WeChat Pay the same way over
  ``TIMESTAMP\\nNONCE\\nBODY\\n``; `Wechatpay-Serial` names the key: a platform public key id
  (``PUB_KEY_ID_…``) or the hex serial number of a platform certificate.
- Notification resources are encrypted with AEAD_AES_256_GCM under the 32-byte APIv3 key.

No I/O here, and nothing is loaded at import time.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from refundbridge.connectors import rsa_signing
from refundbridge.connectors.base import header_value

SCHEME: Final = "WECHATPAY2-SHA256-RSA2048"
APIV3_KEY_BYTES: Final = 32


class SignatureError(ValueError):
    """A WeChat Pay signature is missing, malformed, made with an unknown key, or wrong.
    Callers translate it into the typed error of their context."""


class DecryptionError(ValueError):
    """A notification resource does not decrypt under our APIv3 key (or was altered)."""


# ------------------------------------------------------------------ keys


def load_certificates(pems: Iterable[str]) -> tuple[x509.Certificate, ...]:
    """Every certificate in `pems`; one entry may hold a bundle of several."""
    found: list[x509.Certificate] = []
    for index, pem in enumerate(pems):
        try:
            certs = x509.load_pem_x509_certificates(pem.strip().encode())
        except ValueError as exc:
            raise ValueError(f"entry {index} is not a PEM certificate") from exc
        for cert in certs:
            if not isinstance(cert.public_key(), rsa.RSAPublicKey):
                raise ValueError(f"entry {index}: the certificate's key is not RSA")
        found.extend(certs)
    return tuple(found)


def check_apiv3_key(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) != APIV3_KEY_BYTES:
        raise ValueError(f"must be exactly {APIV3_KEY_BYTES} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class PlatformKeys:
    """The keys WeChat Pay signs with, found by the `Wechatpay-Serial` it sends.

    Both modes may be configured at once, as during WeChat's move from platform certificates
    to platform public keys, when either may sign.
    """

    public_key_id: str | None = None
    public_key: rsa.RSAPublicKey | None = None
    certificates: tuple[x509.Certificate, ...] = field(default=())

    def key_for(self, serial: str, now: datetime) -> rsa.RSAPublicKey:
        if self.public_key is not None and serial == self.public_key_id:
            return self.public_key
        try:
            # Certificate serials arrive as hex, in either case, sometimes zero-padded.
            number = int(serial, 16)
        except ValueError:
            number = None
        for cert in self.certificates:
            if number is not None and cert.serial_number == number:
                if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                    raise SignatureError(f"platform certificate {serial} is not valid at "
                                         f"{now.isoformat()}")
                key = cert.public_key()
                assert isinstance(key, rsa.RSAPublicKey)  # checked when loaded
                return key
        raise SignatureError(f"Wechatpay-Serial {serial!r} names no platform key we trust")

    @property
    def request_serial(self) -> str | None:
        """What to send as `Wechatpay-Serial` on requests: in public-key mode WeChat Pay
        needs the key id to know which key to answer with (as the official SDKs send it)."""
        return self.public_key_id if self.public_key is not None else None


# ------------------------------------------------------------------ requests


def new_nonce() -> str:
    return secrets.token_hex(16).upper()


def request_message(method: str, path_and_query: str, timestamp: int, nonce: str,
                    body: bytes) -> bytes:
    return (f"{method.upper()}\n{path_and_query}\n{timestamp}\n{nonce}\n".encode()
            + body + b"\n")


def authorization(*, mchid: str, serial_no: str, private_key: rsa.RSAPrivateKey,
                  method: str, path_and_query: str, body: bytes, timestamp: int,
                  nonce: str) -> str:
    signature = rsa_signing.sign(private_key, request_message(method, path_and_query,
                                                              timestamp, nonce, body))
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


# ------------------------------------------------------------------ answers, notifications


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    timestamp: int
    nonce: str
    signature: str
    serial: str


def signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The four `Wechatpay-*` headers, looked up case-insensitively."""
    values = {}
    for name in ("Timestamp", "Nonce", "Signature", "Serial"):
        value = (header_value(headers, f"Wechatpay-{name}") or "").strip()
        if not value:
            raise SignatureError(f"missing Wechatpay-{name} header")
        values[name] = value
    signature_type = header_value(headers, "Wechatpay-Signature-Type")
    if signature_type is not None and signature_type.strip() != SCHEME:
        raise SignatureError(f"unsupported Wechatpay-Signature-Type {signature_type!r}")
    try:
        timestamp = int(values["Timestamp"])
    except ValueError as exc:
        raise SignatureError(f"Wechatpay-Timestamp {values['Timestamp']!r} is not a number"
                             ) from exc
    return SignedHeaders(timestamp, values["Nonce"], values["Signature"], values["Serial"])


def verify(keys: PlatformKeys, signed: SignedHeaders, body: bytes, now: datetime) -> None:
    """Raise `SignatureError` unless WeChat Pay signed `body` (the raw bytes received)."""
    key = keys.key_for(signed.serial, now)
    message = f"{signed.timestamp}\n{signed.nonce}\n".encode() + body + b"\n"
    try:
        rsa_signing.verify(key, message, signed.signature)
    except InvalidSignature as exc:
        # WeChat Pay also probes merchants with deliberately broken signatures
        # ("WECHATPAY/SIGNTEST/…"), which must fail here too.
        raise SignatureError("Wechatpay-Signature does not verify") from exc


# ------------------------------------------------------------------ resources


def decrypt(apiv3_key: bytes, *, nonce: str, ciphertext: str, associated_data: str) -> bytes:
    try:
        data = base64.b64decode(ciphertext, validate=True)
        return AESGCM(apiv3_key).decrypt(nonce.encode(), data, associated_data.encode())
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise DecryptionError("resource does not decrypt with our APIv3 key") from exc
