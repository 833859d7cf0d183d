"""Retention: per-device quota, maximum age, and a global byte budget. Recording never stops for space.

After each new clip (and on the periodic pass) the oldest *unprotected* clips go first until every limit
holds: the device's ``storage_limit_megabytes`` (0 = unlimited; an exact fit is allowed, as in the original),
its ``retention_days`` (0 = no age limit) and the deployment's global budget. Deleting a clip deletes its
thumbnail and its index record in the same step; the bucket's ObjectRemoved event then finds nothing left to
do. Protected clips (evidence) are never deleted here. A per-device lock serialises passes so concurrent
uploads cannot race each other past the limit (the original checked and deleted without one), and
protecting or deleting a clip by hand takes the same lock (:func:`device_lock`): each clip is read again under
it just before it is deleted, so a clip protected after the pass listed its candidates is kept.

Cost per new clip: the totals are running totals kept by the index, and candidates come from
:meth:`ClipIndex.oldest_unprotected`, read lazily and abandoned as soon as the limits hold, so a pass reads the
oldest day or two, not the device's history (``bench/bench_retention.py`` measures 1,000 vs 100,000 clips).

Alerts: a storage warning when usage crosses the warning threshold, "capacity reached" when clips had to go;
both rate-limited per device by the alert limiter.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.clips import quarantine
from cryospy.functions.errors import NotFound
from cryospy.functions.retention.deletion import delete_unless_protected, device_lock
from cryospy.functions.services import Services

log = logging.getLogger(__name__)
MIB = 1024 * 1024
_GLOBAL_PASS = threading.Lock()   # one global-budget pass at a time (each deletion takes its device lock too)
@dataclass(frozen=True)
class RetentionResult:
    deleted: tuple[str, ...]
    used_bytes: int
    limit_bytes: int


def _settings(services: Services, device_id: str) -> DeviceSettings:
    try:
        return DeviceSettings.from_dict(services.devices.get(device_id).settings)
    except NotFound:
        return DEFAULT_SETTINGS


def enforce_device(services: Services, device_id: str, now: datetime | None = None) -> RetentionResult:
    now = now or datetime.now(UTC)
    settings = _settings(services, device_id)
    limit = settings.storage_limit_megabytes * MIB
    cutoff_stamp = utc_stamp(now - timedelta(days=settings.retention_days)) if settings.retention_days else None
    deleted: list[str] = []
    for_quota = 0
    with device_lock(device_id):
        usage = services.index.usage(device_id)
        used = usage.bytes + usage.quarantine_bytes
        if limit > 0 and used > limit and usage.quarantine_bytes:
            # Uploads that failed verification go before footage does (functions/clips/quarantine.py).
            kept = quarantine.prune(services, device_id, min(services.quarantine_limit_bytes,
                                                             max(0, limit - usage.bytes)))
            used = usage.bytes + kept
        for clip in services.index.oldest_unprotected(device_id):
            over_quota = limit > 0 and used > limit
            too_old = cutoff_stamp is not None and clip.captured_at < cutoff_stamp
            if not (over_quota or too_old):
                break   # oldest first: nothing later is older, and the quota holds
            gone = delete_unless_protected(services, clip)
            if gone is None:
                continue
            used -= gone.stored_bytes
            deleted.append(clip.key)
            for_quota += 0 if too_old else 1
    if deleted:
        log.info("retention removed %d clip(s) of %s (now %d of %d bytes)", len(deleted), device_id, used, limit)
    if limit > 0:
        if for_quota:
            services.alerts.storage_reached(device_id, used, limit)
        elif used >= limit * services.storage_warning_threshold:
            services.alerts.storage_warning(device_id, used, limit)
    return RetentionResult(tuple(deleted), used, limit)


def enforce_global(services: Services) -> RetentionResult:
    """The deployment-wide budget (0 = none): oldest unprotected clips of any device go first."""
    budget = services.global_budget_bytes
    if budget <= 0:
        return RetentionResult((), services.index.usage().bytes, 0)
    deleted: list[str] = []
    with _GLOBAL_PASS:
        used = services.index.usage().bytes
        if used > budget:
            for clip in services.index.oldest_unprotected():
                if used <= budget:
                    break
                with device_lock(clip.device_id):
                    gone = delete_unless_protected(services, clip)
                if gone is None:
                    continue
                used -= gone.stored_bytes
                deleted.append(clip.key)
    return RetentionResult(tuple(deleted), used, budget)
