"""TinyDB storages that never leave a half-written file.

TinyDB's own JSONStorage rewrites its file in place (seek, write, truncate), so a crash mid-write corrupts
the database. These storages write a temporary file, fsync it and rename it over the old one.
``EncryptedJSONStorage`` additionally seals the JSON with AES-256-GCM under the index key, so per-clip
metadata is never plaintext at rest; the file name is bound in as associated data so shards cannot be
swapped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tinydb.storages import Storage

from cryospy.common.atomic import write_atomic
from cryospy.functions.errors import FunctionsError

_MAGIC = b"CSIX1"


class IndexCorrupt(FunctionsError):
    pass


class AtomicJSONStorage(Storage):
    def __init__(self, path: str | Path, **_: Any):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return json.loads(raw) if raw else None
        except ValueError as exc:
            raise IndexCorrupt(f"{self.path} is not valid JSON ({exc}); restore it from a backup") from exc

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode())


class EncryptedJSONStorage(Storage):
    def __init__(self, path: str | Path, key: bytes, **_: Any):
        self.path = Path(path)
        self._aead = AESGCM(key)
        self._aad = _MAGIC + self.path.name.encode()

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 12 + 16:
            raise IndexCorrupt(f"{self.path} is not an encrypted CryoSpy index shard")
        nonce = raw[len(_MAGIC):len(_MAGIC) + 12]
        try:
            plain = self._aead.decrypt(nonce, raw[len(_MAGIC) + 12:], self._aad)
        except InvalidTag:
            raise IndexCorrupt(f"{self.path} failed authentication (wrong key or tampered file)") from None
        return json.loads(plain)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        nonce = os.urandom(12)
        plain = json.dumps(data, separators=(",", ":")).encode()
        write_atomic(self.path, _MAGIC + nonce + self._aead.encrypt(nonce, plain, self._aad))
