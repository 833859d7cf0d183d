"""The device registry: who may upload, their secret's salted hash, their signing key, and last-seen state.

Only the runtime process writes it (single writer: TinyDB is not safe across threads or processes, so every
access takes the registry's lock and opens a fresh TinyDB). Secrets are 256-bit random values shown to the
admin once; the registry keeps a salted SHA-256 (adequate for full-entropy secrets) and compares in
constant time. An unknown id, a disabled device and a wrong secret all produce the same Unauthorized.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB

from cryospy.common.objectkeys import ObjectKeyError, validate_device_id

from .errors import BadRequest, Conflict, NotFound, Unauthorized
from .storage import AtomicJSONStorage

SECRET_BYTES = 32
# A fixed dummy record keeps the work for unknown ids the same as for known ones (no timing oracle).
_DUMMY_SALT = b"\0" * 16


@dataclass(frozen=True)
class Device:
    device_id: str
    enabled: bool
    signing_key: str
    created_at: str
    last_seen: str | None
    settings: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "enabled": self.enabled, "signing_key": self.signing_key,
                "created_at": self.created_at, "last_seen": self.last_seen, "settings": self.settings}


def _hash(salt: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(salt + secret).digest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DeviceRegistry:
    def __init__(self, path: Path, clock: Callable[[], str] = _now):
        self.path = path
        self._lock = threading.Lock()
        self._clock = clock

    def _db(self) -> TinyDB:
        return TinyDB(self.path, storage=AtomicJSONStorage)

    def _get(self, db: TinyDB, device_id: str) -> dict[str, Any] | None:
        return db.table("devices", cache_size=0).get(Query().device_id == device_id)  # type: ignore[return-value]

    def create(self, device_id: str, signing_key: str, settings: dict[str, Any]) -> tuple[Device, str]:
        """Register a device; returns it and its secret (hex), which is never stored or shown again."""
        try:
            validate_device_id(device_id)
        except ObjectKeyError as exc:
            raise BadRequest(str(exc), field="device_id") from None
        secret = secrets.token_bytes(SECRET_BYTES)
        salt = secrets.token_bytes(16)
        with self._lock, self._db() as db:
            if self._get(db, device_id) is not None:
                raise Conflict(f"device {device_id!r} already exists; pick another id or delete it first")
            now = self._clock()
            db.table("devices", cache_size=0).insert({
                "device_id": device_id, "enabled": True, "signing_key": signing_key,
                "secret_salt": salt.hex(), "secret_hash": _hash(salt, secret).hex(),
                "created_at": now, "updated_at": now, "last_seen": None, "settings": settings,
            })
        return self.get(device_id), secret.hex()

    def get(self, device_id: str) -> Device:
        with self._lock, self._db() as db:
            doc = self._get(db, device_id)
        if doc is None:
            raise NotFound(f"no device {device_id!r}")
        return _device(doc)

    def list(self) -> list[Device]:
        with self._lock, self._db() as db:
            docs = db.table("devices", cache_size=0).all()
        return sorted((_device(d) for d in docs), key=lambda d: d.device_id)

    def authenticate(self, device_id: str, secret_hex: str) -> Device:
        try:
            secret = binascii.unhexlify(secret_hex)
        except (binascii.Error, ValueError):
            secret = b""
        with self._lock, self._db() as db:
            doc = self._get(db, device_id)
        salt = bytes.fromhex(doc["secret_salt"]) if doc else _DUMMY_SALT
        expected = bytes.fromhex(doc["secret_hash"]) if doc else b"\0" * 32
        ok = hmac.compare_digest(_hash(salt, secret), expected)
        if not (doc and ok and doc["enabled"] and len(secret) == SECRET_BYTES):
            raise Unauthorized()
        return _device(doc)

    def authenticate_basic(self, authorization: str | None) -> Device:
        """HTTP Basic ``device_id:hex_secret``, as the original client sends it."""
        if not authorization or not authorization.startswith("Basic "):
            raise Unauthorized()
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized() from None
        device_id, sep, secret_hex = decoded.partition(":")
        if not sep:
            raise Unauthorized()
        return self.authenticate(device_id, secret_hex)

    def touch(self, device_id: str) -> None:
        with self._lock, self._db() as db:
            db.table("devices", cache_size=0).update({"last_seen": self._clock()},
                                                      Query().device_id == device_id)


def _device(doc: dict[str, Any]) -> Device:
    return Device(device_id=doc["device_id"], enabled=bool(doc["enabled"]), signing_key=doc["signing_key"],
                  created_at=doc["created_at"], last_seen=doc.get("last_seen"),
                  settings=dict(doc.get("settings") or {}))
