"""Where the rendered dashboard lives: one AES-256-GCM file per page under the index key.

The pages list clip times and motion, which is per-clip metadata, so they are never written in plaintext.
The page path is bound in as associated data (a page cannot be swapped for another), writes are atomic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.common.atomic import write_atomic


class SiteStore:
    def __init__(self, root: Path, key: Callable[[], bytes]):
        self.root = root
        self._key = key

    def _file(self, page: str) -> Path:
        return self.root / (hashlib.sha256(page.encode()).hexdigest() + ".page")

    def put(self, page: str, html: str) -> None:
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(self._key()).encrypt(nonce, html.encode(), page.encode())
        write_atomic(self._file(page), sealed)

    def get(self, page: str) -> str | None:
        try:
            raw = self._file(page).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return AESGCM(self._key()).decrypt(raw[:12], raw[12:], page.encode()).decode()
        except (InvalidTag, ValueError):
            return None
