"""Dependencies of the Chalice app, built once at the edge and injected.

The app module registers routes and handlers at import time but reads no configuration then; the runtime
(``cryospy serve``) builds :class:`Services` once (``infra/runtime.py: build_services``), calls
:func:`configure` before it serves anything, and views and handlers fetch what they need with
:func:`get_services`.

Every part is typed and present: a part the deployment does not use is a null object (alerts without a
mailer, no per-device identities, no event sink), so domain code never asks "is it configured?". The record
is frozen: nothing rewires it after start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Protocol

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from cryospy.functions.alerts.rules import Alerts
from cryospy.functions.audit.log import AuditLog, NoAudit
from cryospy.functions.channels.hub import ChannelHub
from cryospy.functions.channels.presence import Presence
from cryospy.functions.devices.auth_defence import FailureDefence
from cryospy.functions.devices.identities import DeviceIdentities, SharedUploadIdentity
from cryospy.functions.devices.registry import Device, DeviceRegistry
from cryospy.functions.errors import FunctionsError
from cryospy.functions.events import ObjectEvent
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.keyvault import KeyVault
from cryospy.functions.live.hub import LiveHub, LiveState
from cryospy.functions.uploads.presign import PutPresigner
from cryospy.functions.uploads.slot_limiter import SlotBudget, SlotLimiter


@dataclass(frozen=True)
class S3Identity:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    ca_bundle: str | None = None    # the deployment's CA file when MinIO speaks TLS (None: the system's roots)

    def client(self) -> BaseClient:
        # SigV4 explicitly: boto3 falls back to SigV2 for custom endpoints. Path style keeps Host == endpoint.
        # Checksums only when required, so the client also works against S3 clones without CRC64 support.
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region, verify=self.ca_bundle,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          retries={"max_attempts": 3, "mode": "standard"},
                          connect_timeout=5, read_timeout=60),
        )


class EventSink(Protocol):
    """Where the upload-confirm route hands a new clip's event: the runtime's job queue (the webhook's
    ``enqueue``), which de-duplicates it against MinIO's own notification. Returns how many jobs were queued."""

    def enqueue(self, records: list[ObjectEvent]) -> int: ...


class NoEventSink:
    """No queue behind the app (a bare API without the runtime): confirmations queue nothing; MinIO's
    notification alone brings the clip in."""

    def enqueue(self, records: list[ObjectEvent]) -> int:
        return 0


@dataclass(frozen=True)
class Services:
    bucket: str
    presigner: S3Identity          # may only PutObject under clips/ and live/; endpoint = the URL devices use
    handler: S3Identity            # reads clips, writes derived objects
    devices: DeviceRegistry
    index: ClipIndex
    vault: KeyVault
    defence: FailureDefence        # failed-login counting and blocking (devices/auth_defence.py)
    admin_token: str = field(repr=False)
    max_clip_bytes: int = 512 * 1024 * 1024
    slot_ttl_seconds: int = 600
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Per-device upload identities in MinIO (infra.device_identities); the null object signs every slot with
    # the shared presigner.
    identities: DeviceIdentities = field(default_factory=SharedUploadIdentity)
    # Optional reverse-proxy style check on device routes: (header name, expected value).
    proxy_auth: tuple[str, str] | None = field(default=None, repr=False)
    event_sink: EventSink = field(default_factory=NoEventSink)
    storage_warning_threshold: float = 0.8
    global_budget_bytes: int = 0   # 0 = no deployment-wide budget
    quarantine_limit_bytes: int = 1024 * 1024 * 1024   # per device; counted against its quota too
    slot_limiter: SlotBudget = field(default_factory=SlotLimiter)
    silent_minutes: int = 30
    alerts: Alerts = field(default_factory=Alerts.off)   # e-mail alerts; off = no mailer configured
    home_events: ChannelHub = field(default_factory=ChannelHub)   # real-time channels; none = no-op
    presence: Presence = field(default_factory=Presence)   # which agents are in touch (camera_offline on silence)
    live: LiveState = field(default_factory=LiveHub)   # viewers and newest live parts (live/hub.py, live/pg_hub.py)
    audit: AuditLog | NoAudit = field(default_factory=NoAudit)   # admin actions, exports, logins (audit/log.py)
    _upload_signers: dict[str, PutPresigner] = field(default_factory=dict, repr=False)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def shared_presigner(self) -> PutPresigner:
        return PutPresigner(self.presigner.endpoint, self.presigner.access_key, self.presigner.secret_key,
                            self.presigner.region)

    def upload_presigner(self, device: Device) -> PutPresigner:
        """What signs this device's slots: its own MinIO identity when it has one."""
        if device.upload_identity is None:
            return self.shared_presigner
        with self._clients_lock:
            signer = self._upload_signers.get(device.device_id)
            if signer is None:
                access, secret = device.upload_identity
                signer = PutPresigner(self.presigner.endpoint, access, secret, self.presigner.region)
                self._upload_signers[device.device_id] = signer
            return signer

    def forget_upload_client(self, device_id: str) -> None:
        with self._clients_lock:
            self._upload_signers.pop(device_id, None)

    @cached_property
    def handler_client(self) -> BaseClient:
        return self.handler.client()


_services: Services | None = None


def configure(services: Services | None) -> None:
    global _services
    _services = services


def get_services() -> Services:
    if _services is None:
        raise FunctionsError("the CryoSpy app is not configured; run it with `cryospy serve`")
    return _services
