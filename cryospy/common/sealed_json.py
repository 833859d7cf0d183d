"""A small JSON document sealed at rest under a key derived from the deployment's index key.

Used for what the dashboard saves that holds secrets (channel passwords and tokens, TOTP secrets)::

    magic | nonce (12 bytes) | AES-256-GCM(key, nonce, JSON, associated data = magic)
    key = HKDF-SHA256(index key, info)

Each use has its own ``magic`` and ``info``, so its bytes can never be taken for another's, nor for an index
shard or a page sealed under the index key itself. The index key only exists while the runtime is unlocked;
``index_key()`` raises KeysLocked before that.

With several runtimes on one database the file is a cache of a shared copy (``mirror``, infra/pg_documents.py):
:meth:`SealedJsonFile.load` pulls it first, and a read-modify-write made inside :meth:`SealedJsonFile.editing`
is written through under the shared copy's lock. The bytes stay sealed under the index key as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryospy.common.atomic import write_atomic
from cryospy.common.errors import CryoSpyError
from cryospy.common.file_mirror import FileMirror

NONCE = 12


class SealedFileError(CryoSpyError):
    """The file is not of this kind (``foreign``) or does not open with this deployment's key."""

    def __init__(self, path: Path, foreign: bool):
        self.path, self.foreign = path, foreign
        super().__init__(f"{path} is not this kind of CryoSpy file" if foreign else
                         f"{path} cannot be opened with this deployment's key (damaged, or from another deployment)")


class SealedJsonFile:
    def __init__(self, path: Path, index_key: Callable[[], bytes], magic: bytes, info: bytes,
                 mirror: FileMirror | None = None):
        self.path, self._index_key, self.magic, self._info = path, index_key, magic, info
        self.mirror = mirror

    def editing(self) -> AbstractContextManager[None]:
        """Wrap a load-change-save in this: with a mirror, no other runtime changes the document meanwhile and
        the saved bytes become the shared copy; without one, it does nothing."""
        return self.mirror.editing() if self.mirror is not None else contextlib.nullcontext()

    def _aead(self) -> AESGCM:
        return AESGCM(HKDF(hashes.SHA256(), 32, salt=None, info=self._info).derive(self._index_key()))

    def load(self) -> Any:
        """The document, or None when the file does not exist yet."""
        if self.mirror is not None:
            self.mirror.pull()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        n = len(self.magic)
        if raw[:n] != self.magic:
            raise SealedFileError(self.path, foreign=True)
        try:
            return json.loads(self._aead().decrypt(raw[n:n + NONCE], raw[n + NONCE:], self.magic))
        except (InvalidTag, ValueError):
            raise SealedFileError(self.path, foreign=False) from None

    def save(self, doc: Any) -> None:
        nonce = os.urandom(NONCE)
        sealed = self._aead().encrypt(nonce, json.dumps(doc, separators=(",", ":")).encode(), self.magic)
        write_atomic(self.path, self.magic + nonce + sealed)
