"""What the provider fakes share: a respx router to serve on, the hooks through which a test
answers in a fake's place, state kept in a JSON file, and keys written as PEM text, as a
shop's config holds them.

A fake with a state file is one "provider" for several processes (a killed worker and its
successor): each call reads and writes the file under an exclusive lock, as one provider
would serialize them. Without a file the state lives in the fake's memory only.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class Installable(Protocol):
    def install(self, router: respx.MockRouter) -> None: ...


@contextmanager
def installed(fake: Installable) -> Iterator[respx.MockRouter]:
    """An active respx router serving `fake`; a call that no route answers fails the test
    (it would have left our walls)."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        fake.install(router)
        yield router


def hooked_answer(hooks: Iterable[Callable[..., httpx.Response | None]], *args: Any
                  ) -> httpx.Response | None:
    """The first answer a test's hook gives in place of the fake's (a 503, a refusal, garbage),
    or None: the fake answers."""
    for hook in hooks:
        answer = hook(*args)
        if answer is not None:
            return answer
    return None


def read_state(state_file: Path | None) -> dict[str, Any] | None:
    """What the file holds, or None when there is no file (yet): keep what is in memory."""
    if state_file is None or not state_file.exists():
        return None
    data: dict[str, Any] = json.loads(state_file.read_text())
    return data


def write_state(state_file: Path | None, state: Mapping[str, Any]) -> None:
    if state_file is None:
        return
    # Written aside and renamed, so a reader never sees half a file.
    tmp = state_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_file)


@contextmanager
def exclusive(state_file: Path | None) -> Iterator[None]:
    """One process at a time reads and writes the shared state, as one provider would."""
    if state_file is None:
        yield
        return
    with state_file.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
