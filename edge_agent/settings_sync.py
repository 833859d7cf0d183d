"""Settings sync: the server's device settings, polled with an ETag and cached on disk.

Why a cache: a camera must record after a power cut even when the server (or the network) is not back yet,
and it must record the way the admin last configured it, not with factory defaults. So every document the
server sends is written atomically to ``settings.json`` in the spool directory, and at start the agent uses,
in order: that cache, else :data:`DEFAULT_SETTINGS` (plus the config's local pins, which the recording plan
applies). Nothing here ever blocks recording: the recorder asks :meth:`SettingsSync.current` for a snapshot
at the start of each clip, so new settings apply from the next clip.

The document also carries ``deployment_public_key``. When the admin rotates the deployment key the
document changes and new clips seal to the new key; clips already sealed stay readable with the old one.
The server's ETag covers the whole document (settings and key), so every poll can be conditional: a rotated
key changes the ETag like an edited setting does. The ETag in use goes out with every heartbeat, which is how
the dashboard tells whether a camera has caught up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryospy.common.atomic import write_atomic
from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.objectkeys import is_storage_token
from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings, SettingsError
from cryospy.common.timefmt import utc_stamp_seconds

from .api_client import ApiClient, Retryable
from .config import AgentConfig
from .errors import UploadError

log = logging.getLogger(__name__)

_KNOWN = frozenset(f.name for f in fields(DeviceSettings))


@dataclass(frozen=True)
class SettingsSnapshot:
    """What one clip is recorded and sealed with. ``etag`` is "" until the server was reached once."""

    settings: DeviceSettings
    etag: str
    recipient: DeploymentPublicKey
    origin: str          # "server", "cache" or "defaults": for the log and the tests
    storage_token: str = ""   # the device's pseudonym in object keys ("" until a document brought it)


class SettingsDocumentError(ValueError):
    """A settings document (from the server or the cache) this agent cannot use; the old settings stay."""


def parse_document(doc: Any) -> tuple[DeviceSettings, DeploymentPublicKey]:
    """The settings and the deployment key in a document from ``GET /v1/device/settings``.

    Settings this agent does not know (a newer server) are left out with a warning rather than refused, so an
    older camera keeps recording with everything it does understand.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
        raise SettingsDocumentError("the settings document has no 'settings' object")
    raw = doc["settings"]
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        log.warning("the server sent settings this agent does not know (%s); ignoring them. Upgrade the agent "
                    "to use them.", ", ".join(unknown))
    try:
        settings = DeviceSettings.from_dict({k: v for k, v in raw.items() if k in _KNOWN})
    except SettingsError as exc:
        raise SettingsDocumentError(f"setting {exc.field}: {exc.message}") from None
    try:
        recipient = DeploymentPublicKey.from_text(str(doc.get("deployment_public_key", "")))
    except Exception as exc:  # the key parser raises several types; all mean "unusable"
        raise SettingsDocumentError(f"deployment_public_key is not usable: {exc}") from None
    return settings, recipient


def storage_token_of(doc: dict[str, Any]) -> str:
    """The device's storage token in a settings document; "" when absent or malformed (an older server)."""
    token = doc.get("storage_token")
    return token if isinstance(token, str) and is_storage_token(token) else ""


class SettingsSync:
    """A loop that keeps :meth:`current` fresh; see the module docstring."""

    def __init__(self, config: AgentConfig, client: ApiClient, cache_path: Path, stop: threading.Event) -> None:
        self.config = config
        self.client = client
        self.cache_path = cache_path
        self.stop = stop
        self.wake = threading.Event()     # set to sync now (the heartbeat says settings changed)
        self.attempted = threading.Event()  # the first poll is over, answered or not
        self._lock = threading.Lock()
        self._snapshot = self._initial()

    # -- reading --------------------------------------------------------------------------------------
    def current(self) -> SettingsSnapshot:
        with self._lock:
            return self._snapshot

    def interval(self) -> float:
        """Seconds between polls: the config's pin, else the server's ``settings_sync_seconds``."""
        return float(self.config.settings_sync_seconds or self.current().settings.settings_sync_seconds)

    def _initial(self) -> SettingsSnapshot:
        try:
            cached = json.loads(self.cache_path.read_text())
            settings, recipient = parse_document(cached["document"])
            log.info("starting on the cached settings from %s (ETag %s)", cached.get("saved_at", "?"),
                     cached.get("etag", ""))
            return SettingsSnapshot(settings, str(cached.get("etag", "")), recipient, "cache",
                                    storage_token_of(cached["document"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, SettingsDocumentError) as exc:
            log.error("ignoring the settings cache %s (%s); using the defaults until the server answers",
                      self.cache_path, exc)
        return SettingsSnapshot(DEFAULT_SETTINGS, "", DeploymentPublicKey.from_text(self.config.deployment_public_key),
                                "defaults")

    # -- syncing --------------------------------------------------------------------------------------
    def sync_once(self) -> bool:
        """Poll the server once; True when the settings or the key changed. Raises Retryable/UploadError."""
        current = self.current()
        answer = self.client.get_settings(current.etag if current.origin != "defaults" else "")
        if answer is None:
            return False
        try:
            settings, recipient = parse_document(answer.document)
        except SettingsDocumentError as exc:
            log.error("the server sent settings this agent cannot use (%s); recording goes on with the current "
                      "ones", exc)
            return False
        if answer.document.get("device_id") not in (None, self.config.client_id):
            log.warning("the settings are for device %r but this agent is %r", answer.document.get("device_id"),
                        self.config.client_id)
        changed = (settings != current.settings or recipient.key_id != current.recipient.key_id
                   or answer.etag != current.etag)
        if recipient.key_id != current.recipient.key_id:
            log.info("deployment key changed to %s: new clips are sealed to it", recipient.key_id)
        if changed:
            self._save(answer.document, answer.etag)
            with self._lock:
                self._snapshot = SettingsSnapshot(settings, answer.etag, recipient, "server",
                                                  storage_token_of(answer.document))
            log.info("settings updated (ETag %s); they apply from the next clip", answer.etag)
        elif current.origin != "server":
            with self._lock:
                self._snapshot = SettingsSnapshot(settings, answer.etag, recipient, "server",
                                                  storage_token_of(answer.document))
        return changed

    def _save(self, document: dict[str, Any], etag: str) -> None:
        cache = {"etag": etag, "document": document,
                 "saved_at": utc_stamp_seconds(datetime.now(UTC))}
        try:
            write_atomic(self.cache_path, json.dumps(cache).encode())
        except OSError as exc:
            log.error("cannot cache the settings in %s (%s); they still apply until the agent restarts",
                      self.cache_path, exc)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.sync_once()
            except Retryable as exc:
                log.info("settings sync postponed: %s", exc)
            except UploadError as exc:
                log.warning("settings sync failed: %s", exc)
            except Exception:
                log.exception("settings sync failed unexpectedly; trying again next interval")
            self.attempted.set()
            self._sleep(self.interval())

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when stopping or woken."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and not self.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.stop.wait(min(left, 0.5))
        self.wake.clear()
