"""The periodic pass that no single event triggers: age and global retention, gap audits, silent devices.

Run by the runtime's reconciler loop every few minutes (and callable on demand); each step is idempotent
and independent, so one failing never stops the others.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from cryospy.common.timefmt import parse_utc
from cryospy.functions.clips import chain_check
from cryospy.functions.retention import policy
from cryospy.functions.services import Services

log = logging.getLogger(__name__)


def silent_devices(services: Services, now: datetime | None = None) -> list[str]:
    now = now or datetime.now(UTC)
    limit = timedelta(minutes=services.silent_minutes)
    silent = []
    for device in services.devices.list():
        if not device.enabled or device.retired:
            continue
        seen = device.last_seen or device.created_at
        when = parse_utc(seen)
        if now - when > limit:
            silent.append(device.device_id)
            services.alerts.device_silent(device.device_id, device.last_seen, services.silent_minutes)
    return silent


def run_pass(services: Services) -> dict[str, object]:
    report: dict[str, object] = {}
    for name, step in (
        ("retention", lambda: {d: len(policy.enforce_device(services, d).deleted)
                               for d in services.index.devices()}),
        ("global_retention", lambda: len(policy.enforce_global(services).deleted)),
        ("gaps", lambda: len(chain_check.audit_gaps(services))),
        ("newest", lambda: len(chain_check.audit_newest(services))),
        ("silent", lambda: silent_devices(services)),
    ):
        try:
            report[name] = step()
        except Exception as exc:  # one step failing must not stop the others
            log.exception("maintenance step %s failed", name)
            report[name] = f"failed: {exc}"
    return report
