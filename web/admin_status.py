"""What the admin's system-status page shows, gathered from the parts that know it.

Each probe answers for itself and never hides a failure behind a plausible value: MinIO that does not answer
is "unreachable" with the error, storage behind a locked index key says so instead of showing zero.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryospy.common.timefmt import utc_stamp
from cryospy.functions.errors import KeysLocked
from cryospy.functions.services import Services

DEAD_LETTERS_SHOWN = 20


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def minio_health(minio_url: str, timeout: float = 2.0, ca_pem: str = "") -> Health:
    """MinIO's liveness probe (``/minio/health/live``), asked from the server with a short timeout; over TLS
    MinIO's certificate must be signed by the deployment's CA (``ca_pem``)."""
    url = minio_url.rstrip("/") + "/minio/health/live"
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout,
                                    context=context) as resp:
            return Health(resp.status == 200, f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        return Health(False, f"HTTP {exc.code} from {url}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Health(False, f"{url}: {reason}")


@dataclass(frozen=True)
class DeadLetter:
    id: int
    handler: str
    object_key: str
    attempts: int
    reason: str
    updated: str


@dataclass(frozen=True)
class Storage:
    locked: bool
    total_bytes: int = 0
    total_clips: int = 0
    per_device: list[tuple[str, int, int]] = field(default_factory=list)   # (device id, bytes, clips)


def dead_letters(queue: Any, limit: int = DEAD_LETTERS_SHOWN) -> list[DeadLetter]:
    """The newest dead-lettered jobs first."""
    rows = queue.dead_letters()[-limit:]
    return [DeadLetter(r.id, r.handler, r.key, r.attempts, r.reason,
                       utc_stamp(datetime.fromtimestamp(r.updated, UTC))) for r in reversed(rows)]


@dataclass(frozen=True)
class RuntimeRow:
    """A runtime sharing the database, as the status page lists it (infra/runtime_registry.py)."""
    name: str
    url: str
    state: str        # alive, silent (no heartbeat for longer than its lease), stopped
    since: str        # silent: its last heartbeat; stopped: when it stopped; alive: its last heartbeat
    started: str
    running: int
    here: bool        # the runtime serving this page


def runtimes(registry: Any) -> list[RuntimeRow]:
    """Every runtime in the registry, this one marked (``registry``: a RuntimeRegistry)."""
    def stamp(when: float) -> str:
        return utc_stamp(datetime.fromtimestamp(when, UTC))
    return [RuntimeRow(r.name, r.url, r.state, stamp(r.stopped if r.stopped is not None else r.heartbeat),
                       stamp(r.started), r.running, r.name == registry.name) for r in registry.list()]


def storage(services: Services) -> Storage:
    """Stored bytes overall and per device, from the index (which needs the unlocked index key)."""
    try:
        total = services.index.usage()
        ids = sorted(set(services.index.devices()) | {d.device_id for d in services.devices.list()})
        per_device = [(d, u.bytes, u.clips) for d in ids for u in (services.index.usage(d),)]
    except KeysLocked:
        return Storage(locked=True)
    return Storage(False, total.bytes, total.clips, per_device)


def uptime_text(started: float, now: float | None = None) -> str:
    seconds = int((time.monotonic() if now is None else now) - started)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s"
