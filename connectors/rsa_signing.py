"""SHA256withRSA (PKCS#1 v1.5, base64): how Alipay ("RSA2") and WeChat Pay (API v3) both
sign, and the RSA keys they sign with. What each provider signs (its sign base) stays in its
own connector; only the keys and the signature itself are shared.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from functools import partial
from typing import Annotated, Final, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import AfterValidator, SecretStr

MIN_KEY_BITS: Final = 2048  # both providers issue, and sign with, 2048-bit keys


class KeyFormatError(ValueError):
    """A configured key is not a usable RSA key (the message says why). A `ValueError`, so
    raised in a pydantic validator it is reported against the setting."""


def _der_of(text: str) -> bytes | None:
    """Alipay's console hands keys out as bare base64 without PEM armour; accept both."""
    if "-----BEGIN" in text:
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise KeyFormatError("is neither PEM nor base64-encoded DER") from exc


K = TypeVar("K", rsa.RSAPrivateKey, rsa.RSAPublicKey)


def _read_key(text: str, what: str, from_der: Callable[[bytes], object],
              from_pem: Callable[[bytes], object]) -> object:
    der = _der_of(text)
    try:
        return from_der(der) if der is not None else from_pem(text.strip().encode())
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"is not a readable {what} ({exc})") from exc


def _checked_size(key: K) -> K:
    if key.key_size < MIN_KEY_BITS:
        raise KeyFormatError(f"has {key.key_size} bits; at least {MIN_KEY_BITS} are needed")
    return key


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key, PEM or bare base64 (PKCS#8 or PKCS#1)."""
    key = _read_key(text, "unencrypted private key",
                    partial(serialization.load_der_private_key, password=None),
                    partial(serialization.load_pem_private_key, password=None))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError("is not an RSA key")
    return _checked_size(key)


def private_key_pem(text: str) -> str:
    """The private key in `text`, checked as `load_private_key` checks it, as PKCS#8 PEM.

    Settings keep keys in this form whatever the shop pasted: the base's placeholder check
    knows PEM for key material, while bare base64 could spell a marker ("demo", "todo") by
    chance.
    """
    return load_private_key(text).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode("ascii")


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An RSA public key, PEM or bare base64 (SubjectPublicKeyInfo or PKCS#1)."""
    key = _read_key(text, "public key", serialization.load_der_public_key,
                    serialization.load_pem_public_key)
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError("is not an RSA key")
    return _checked_size(key)


def _private_key_setting(value: SecretStr) -> SecretStr:
    return SecretStr(private_key_pem(value.get_secret_value()))


def _public_key_setting(value: str) -> str:
    load_public_key(value)
    return value


# Settings fields for keys, checked when the settings are read, so a broken key stops the
# start, not a refund. The private key is kept as PKCS#8 PEM (see `private_key_pem`).
PrivateKeySetting = Annotated[SecretStr, AfterValidator(_private_key_setting)]
PublicKeySetting = Annotated[str, AfterValidator(_public_key_setting)]


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """The base64 SHA256withRSA signature of `message`."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())
                            ).decode("ascii")


def verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> None:
    """Raise `InvalidSignature` unless `signature` (base64; line breaks, as some SDKs wrap
    it, are ignored) is `key`'s over `message`. Not base64 at all is invalid too."""
    try:
        raw = base64.b64decode("".join(signature.split()), validate=True)
    except binascii.Error as exc:
        raise InvalidSignature("the signature is not base64") from exc
    key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
