"""Each clip's fragment table (byte ranges and times of its moof+mdat pairs), kept beside the index shards.

Why not in the clip's index record: a 60-second clip at 1-second keyframes has 60 fragments, which made the
fragment table three quarters of a record. TinyDB rewrites a whole day shard on every write and the dashboard
reads whole shards to render a day, so every clip paid for every other clip's fragments twice: indexing got
slower as the day filled up, and a full rebuild took twice as long. Only playback needs fragments, one clip or
one day at a time.

So they go into one append-only file per device-day: one line per clip, each line sealed on its own with
AES-256-GCM under the index key (the device and day bound in as associated data), so an append is O(1) and a
torn last line after a crash is skipped rather than corrupting the day. When a clip is indexed again the newer
line wins. The file goes when its day has no clips left.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.functions.api import validate

Fragments = list[list[float]]
CACHED_DAYS = 64


class FragmentLog:
    def __init__(self, root: Path, key: Callable[[], bytes]):
        self.root = root
        self._key = key
        self._cache: OrderedDict[Path, tuple[int, dict[str, Fragments]]] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, device_dir: str, day: str) -> Path:
        return self.root / "fragments" / device_dir / f"{validate.day(day)}.log"

    @staticmethod
    def _aad(device_dir: str, day: str) -> bytes:
        return f"{device_dir}/{day}".encode()

    def append(self, device_dir: str, day: str, entries: Iterable[tuple[str, Fragments]]) -> None:
        """Add ``(clip key, fragments)`` lines and fsync: the index record that points here is written after."""
        aead, aad = AESGCM(self._key()), self._aad(device_dir, day)
        lines = []
        for clip_key, fragments in entries:
            nonce = os.urandom(12)
            plain = json.dumps({"key": clip_key, "fragments": fragments}, separators=(",", ":")).encode()
            lines.append(base64.b64encode(nonce + aead.encrypt(nonce, plain, aad)) + b"\n")
        path = self._path(device_dir, day)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def day(self, device_dir: str, day: str) -> dict[str, Fragments]:
        """Every clip's fragments for the day, by clip key (cached until the file grows)."""
        path = self._path(device_dir, day)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return {}
        with self._lock:
            cached = self._cache.get(path)
            if cached is not None and cached[0] == size:
                self._cache.move_to_end(path)
                return cached[1]
        table = self._read(path, self._aad(device_dir, day))
        with self._lock:
            self._cache[path] = (size, table)
            self._cache.move_to_end(path)
            while len(self._cache) > CACHED_DAYS:
                self._cache.popitem(last=False)
        return table

    def _read(self, path: Path, aad: bytes) -> dict[str, Fragments]:
        aead, table = AESGCM(self._key()), {}
        for line in path.read_bytes().splitlines():
            try:
                blob = base64.b64decode(line, validate=True)
                doc: dict[str, Any] = json.loads(aead.decrypt(blob[:12], blob[12:], aad))
            except (ValueError, InvalidTag):
                continue   # a line torn by a crash mid-append; the clip is indexed again by the reconciler
            table[doc["key"]] = doc["fragments"]
        return table

    def drop(self, device_dir: str, day: str | None = None) -> None:
        """Forget one day's table, or (``day=None``) all of a device's."""
        paths = [self._path(device_dir, day)] if day else list((self.root / "fragments" / device_dir).glob("*.log"))
        with self._lock:
            for path in paths:
                self._cache.pop(path, None)
                path.unlink(missing_ok=True)
        if day is None and (self.root / "fragments" / device_dir).is_dir():
            (self.root / "fragments" / device_dir).rmdir()
