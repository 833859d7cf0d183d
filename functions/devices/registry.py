"""The device registry: who may upload, their secret's salted hash, their signing key, settings and health.

The records live in a :class:`~cryospy.functions.devices.device_store.DeviceStore`: the embedded file
(``runtime/devices.json``, one writer: the runtime) or PostgreSQL (``database_url``, shared by runtimes).
Secrets are 256-bit random values shown to the admin once; the registry keeps a salted SHA-256 (adequate
for full-entropy secrets) and compares in constant time. An unknown id, a disabled device and a wrong secret
all produce the same Unauthorized.

A device removed with "keep my clips" is *retired*, not forgotten: it can no longer authenticate, but its
public signing key stays so its clips remain verifiable and browsable (no orphans).

Signing keys are trusted on first use. A device created without one (the dashboard's path: no key material
passes through the browser) is *awaiting its key* until its agent registers the public half of the key it made
itself. From then on the key is fixed: a different key is refused, because a camera that could swap its key
could re-sign and so rewrite its own history. The admin compares the fingerprint the agent logs with the one
shown here.

Each device also has a *storage token* (:func:`cryospy.common.objectkeys.new_storage_token`): the pseudonym its
object keys and sealed headers carry instead of its name. It is drawn at random when the device is created (or,
for a registry from before tokens, when the registry is first opened), never changes, is never given to another
device, and only this registry maps it back to the name (:meth:`DeviceRegistry.resolve`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryospy.common.keys import verify_key_fingerprint, verify_key_from_text
from cryospy.common.objectkeys import ObjectKeyError, is_storage_token, new_storage_token, validate_device_id
from cryospy.common.timefmt import utc_stamp_seconds
from cryospy.functions.devices.device_store import DeviceStore, FileDeviceStore
from cryospy.functions.devices.health import DeviceHealth, HealthStore
from cryospy.functions.errors import BadRequest, Conflict, NotFound, Unauthorized

SECRET_BYTES = 32
_DUMMY_SALT = b"\0" * 16   # unknown ids cost the same work as known ones (no timing oracle)


@dataclass(frozen=True)
class Device:
    device_id: str
    enabled: bool
    retired: bool
    signing_key: str | None            # None: created without one, awaiting the agent's registration
    created_at: str
    updated_at: str
    last_seen: str | None
    settings: dict[str, Any]
    heartbeat: dict[str, Any] | None = None
    storage_token: str = ""            # the pseudonym in its object keys and sealed headers (module docstring)
    upload_identity: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def signing_key_fingerprint(self) -> str | None:
        return key_fingerprint(self.signing_key) if self.signing_key else None

    def public(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "enabled": self.enabled, "retired": self.retired,
                "signing_key": self.signing_key, "signing_key_fingerprint": self.signing_key_fingerprint,
                "awaiting_signing_key": not self.signing_key,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "last_seen": self.last_seen, "settings": self.settings, "heartbeat": self.heartbeat,
                "storage_token": self.storage_token}


def key_fingerprint(signing_key: str) -> str | None:
    """The fingerprint of a stored public key; None for a value that does not parse (old test data)."""
    try:
        return verify_key_fingerprint(verify_key_from_text(signing_key))
    except Exception:   # the key parser raises several types; all mean "no fingerprint to show"
        return None


def _hash(salt: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(salt + secret).digest()


def _now() -> str:
    return utc_stamp_seconds(datetime.now(UTC))


def _new_secret() -> tuple[bytes, dict[str, str]]:
    secret, salt = secrets.token_bytes(SECRET_BYTES), secrets.token_bytes(16)
    return secret, {"secret_salt": salt.hex(), "secret_hash": _hash(salt, secret).hex()}


class DeviceRegistry:
    """The registry's rules over a :class:`~cryospy.functions.devices.device_store.DeviceStore`: the embedded
    file at ``path`` by default, or the one given (PostgreSQL, shared by several runtimes).

    Last-seen and heartbeats are not registry changes: they live in :class:`DeviceHealth` beside ``path``
    (``<name>-health.json``), so a heartbeat never rewrites the registry nor waits for its lock; or in the
    ``health`` given (PostgreSQL, shared by several runtimes: functions/devices/pg_health.py).
    """

    def __init__(self, path: Path, clock: Callable[[], str] = _now, health_persist_seconds: float = 30.0,
                 store: DeviceStore | None = None, health: HealthStore | None = None):
        self.path = path
        self._lock = threading.RLock()
        self._clock = clock
        self._store: DeviceStore = store if store is not None else FileDeviceStore(path)
        self.health: HealthStore = health if health is not None else DeviceHealth(
            path.with_name(f"{path.stem}-health.json"), health_persist_seconds)
        for doc in sorted(self._store.all(), key=lambda d: d["device_id"]):
            token = doc.get("storage_token", "")
            if not is_storage_token(token) or self._store.by_token(token) != doc["device_id"]:
                # A registry from before storage tokens (or a damaged one): give the device its pseudonym now.
                self._store.change(doc["device_id"], lambda d: {**d, "storage_token": self.new_token()})

    def new_token(self) -> str:
        """A storage token no device here has (130 random bits: a clash never happens, but is checked)."""
        token = new_storage_token()
        while self._store.by_token(token) is not None:
            token = new_storage_token()
        return token

    def _require(self, device_id: str) -> dict[str, Any]:
        doc = self._store.get(device_id)
        if doc is None:
            raise NotFound(f"no device {device_id!r}")
        return doc

    def _device(self, doc: dict[str, Any]) -> Device:
        """The device as callers see it: its registry record with its latest health report laid over it (a
        registry written by an older version may still hold last-seen and heartbeat itself)."""
        health = self.health.get(doc["device_id"]) or {}
        return _device({**doc, **{k: v for k, v in health.items() if v is not None}})

    def _update(self, device_id: str, changes: dict[str, Any],
                check: Callable[[dict[str, Any]], None] = lambda _: None) -> Device:
        """Apply ``changes`` after ``check(current)`` (which may raise), atomically in the store."""
        def change(doc: dict[str, Any]) -> dict[str, Any]:
            check(doc)
            return {**doc, **changes, "updated_at": self._clock()}
        return self._device(self._store.change(device_id, change))

    # -- lifecycle -----------------------------------------------------------------------------------
    def create(self, device_id: str, signing_key: str | None, settings: dict[str, Any],
               upload_identity: tuple[str, str] | None = None, storage_token: str | None = None,
               ) -> tuple[Device, str]:
        """Register a device; returns it and its secret (hex), which is never stored or shown again.

        ``signing_key`` None (or "") leaves the device awaiting its key: see :meth:`register_signing_key`.
        ``storage_token`` is one from :meth:`new_token` (the caller made the upload identity for it first);
        None draws one here."""
        try:
            validate_device_id(device_id)
        except ObjectKeyError as exc:
            raise BadRequest(str(exc), field="device_id") from None
        secret, hashed = _new_secret()
        if storage_token is not None and not is_storage_token(storage_token):
            raise Conflict("that storage token is malformed or taken; draw one with new_token()")
        now = self._clock()
        doc = {
            "device_id": device_id, "storage_token": storage_token or self.new_token(),
            "enabled": True, "retired": False, "signing_key": signing_key or None, **hashed,
            "created_at": now, "updated_at": now, "last_seen": None, "settings": settings, "heartbeat": None,
            "upload_identity": list(upload_identity) if upload_identity else None,
        }
        self._store.insert(doc)   # Conflict when the id or the token is taken, atomically with the write
        return self._device(doc), secret.hex()

    def exists(self, device_id: str) -> bool:
        return self._store.get(device_id) is not None

    def get(self, device_id: str) -> Device:
        return self._device(self._require(device_id))

    def resolve(self, owner: str) -> Device:
        """The device a clip key's owner segment names: a storage token, or a device id in a legacy key."""
        device_id = self._store.by_token(owner) if is_storage_token(owner) else owner
        if device_id is None:
            raise NotFound("no device has that storage token")
        return self._device(self._require(device_id))

    def list(self) -> list[Device]:
        return sorted((self._device(d) for d in self._store.all()), key=lambda d: d.device_id)

    def set_enabled(self, device_id: str, enabled: bool) -> Device:
        def check(doc: dict[str, Any]) -> None:
            if enabled and doc.get("retired"):
                raise Conflict(f"device {device_id!r} was removed; enrol it again under a new id")
        return self._update(device_id, {"enabled": enabled}, check)

    def rotate_secret(self, device_id: str) -> tuple[Device, str]:
        def check(doc: dict[str, Any]) -> None:
            if doc.get("retired"):
                raise Conflict(f"device {device_id!r} was removed; it has no secret to rotate")
        secret, hashed = _new_secret()
        return self._update(device_id, hashed, check), secret.hex()

    def update_settings(self, device_id: str, settings: dict[str, Any]) -> Device:
        return self._update(device_id, {"settings": settings})

    def set_upload_identity(self, device_id: str, identity: tuple[str, str]) -> Device:
        return self._update(device_id, {"upload_identity": list(identity)})

    def retire(self, device_id: str) -> Device:
        """Keep the record (and signing key) for its clips; it can never authenticate again."""
        return self._update(device_id, {"enabled": False, "retired": True, "secret_hash": "",
                                        "upload_identity": None})

    def register_signing_key(self, device_id: str, signing_key: str) -> tuple[Device, bool]:
        """Trust on first use: store the device's public key if it has none; returns the device and whether
        the key was stored now (False: the same key was registered before, e.g. by an earlier agent start).

        ``signing_key`` must already be in canonical text form (the caller parsed it), so equal keys compare
        equal as text. Checked and written in one atomic change of the store, so two racing first
        registrations (on one runtime or two) cannot both win.
        """
        stored_now = False

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            nonlocal stored_now
            current = doc.get("signing_key") or None
            if current == signing_key:
                return doc
            if doc.get("retired"):
                raise Conflict(f"device {device_id!r} was removed; enrol it again under a new id")
            if current is not None:
                raise Conflict(
                    f"device {device_id!r} already has a signing key (fingerprint {key_fingerprint(current)}) and a "
                    "registered key is never replaced, so a camera cannot re-sign its history. If this camera "
                    "really lost its key, delete the device and create it again (under a new id if you keep its clips) "
                    "and give the agent the new config")
            stored_now = True
            return {**doc, "signing_key": signing_key, "updated_at": self._clock()}

        return self._device(self._store.change(device_id, change)), stored_now

    def remove(self, device_id: str) -> None:
        self._store.remove(device_id)
        self.health.forget(device_id)

    # -- device-facing -------------------------------------------------------------------------------
    def authenticate(self, device_id: str, secret_hex: str) -> Device:
        try:
            secret = binascii.unhexlify(secret_hex)
        except (binascii.Error, ValueError):
            secret = b""
        doc = self._store.get(device_id)
        usable = bool(doc and doc.get("secret_hash"))
        salt = bytes.fromhex(doc["secret_salt"]) if usable and doc else _DUMMY_SALT
        expected = bytes.fromhex(doc["secret_hash"]) if usable and doc else b"\0" * 32
        ok = hmac.compare_digest(_hash(salt, secret), expected)
        if not (doc and usable and ok and doc["enabled"] and len(secret) == SECRET_BYTES):
            raise Unauthorized()
        return self._device(doc)

    def touch(self, device_id: str, heartbeat: dict[str, Any] | None = None) -> None:
        """Record that the device was seen (and its heartbeat): written behind (DeviceHealth, or throttled:
        PostgresDeviceHealth)."""
        if self.exists(device_id):
            self.health.record(device_id, self._clock(), heartbeat)

    def flush(self) -> None:
        """Write the health reports through (at shutdown)."""
        self.health.flush()

    def close(self) -> None:
        self.health.close()
        self._store.close()


def parse_basic(authorization: str | None) -> tuple[str, str]:
    """HTTP Basic ``device_id:hex_secret``, as the original client sends it; Unauthorized when malformed."""
    if not authorization or not authorization.startswith("Basic "):
        raise Unauthorized()
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized() from None
    device_id, sep, secret_hex = decoded.partition(":")
    if not sep or not device_id:
        raise Unauthorized()
    return device_id, secret_hex


def _device(doc: dict[str, Any]) -> Device:
    identity = doc.get("upload_identity")
    return Device(device_id=doc["device_id"], enabled=bool(doc["enabled"]), retired=bool(doc.get("retired")),
                  signing_key=doc.get("signing_key") or None, created_at=doc["created_at"],
                  updated_at=doc.get("updated_at", doc["created_at"]), last_seen=doc.get("last_seen"),
                  settings=dict(doc.get("settings") or {}), heartbeat=doc.get("heartbeat"),
                  storage_token=doc.get("storage_token", ""),
                  upload_identity=(identity[0], identity[1]) if identity else None)
