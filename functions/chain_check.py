"""Checks each new clip against its neighbours in the device's hash chain.

Verdicts stored on the clip's index record (``chain``):

* ``first``          sequence 0: the start of the device's chain;
* ``ok``             the predecessor is indexed and this clip's ``prev_hash`` is its header hash;
* ``broken-link``    the predecessor is indexed but the hashes disagree: an edit, a splice or a replay;
* ``awaiting-predecessor``  the predecessor is not indexed (yet): clips can be processed out of order, so
  this is only a gap once it has stayed so for a while; :func:`audit_gaps` turns old ones into ``gap``.

A clip that arrives late re-checks its successor, so verdicts converge whatever the processing order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .services import Services

GAP_GRACE = timedelta(minutes=10)


def _verdict(record: dict[str, Any], predecessor: dict[str, Any] | None) -> str:
    if record["sequence"] == 0:
        return "first"
    if predecessor is None:
        return "awaiting-predecessor"
    return "ok" if predecessor["header_hash"] == record["prev_hash"] else "broken-link"


def link(services: Services, record: dict[str, Any]) -> str:
    predecessor = None
    if record["sequence"] > 0:
        predecessor = services.index.find_sequence(record["device_id"], record["sequence"] - 1, record["day"], -1)
    verdict = _verdict(record, predecessor)
    if verdict == "broken-link" and services.alerts is not None:
        services.alerts.tampering(record["device_id"], record["key"],
                                  f"clip #{record['sequence']} does not chain to clip #{record['sequence'] - 1}")
    return verdict


def relink_successor(services: Services, record: dict[str, Any]) -> None:
    successor = services.index.find_sequence(record["device_id"], record["sequence"] + 1, record["day"], +1)
    if successor is None or successor.get("chain") not in ("awaiting-predecessor", "gap"):
        return
    verdict = _verdict(successor, record)
    services.index.update_clip(successor["device_id"], successor["day"], successor["key"], {"chain": verdict})


def audit_gaps(services: Services, now: datetime | None = None) -> list[dict[str, Any]]:
    """Turn predecessors missing for longer than the grace period into gaps, alert once each."""
    now = now or datetime.now(UTC)
    found = []
    for device_id in services.index.devices():
        for day in services.index.days(device_id)[-3:]:
            for clip in services.index.clips_for_day(device_id, day):
                if clip.get("chain") != "awaiting-predecessor":
                    continue
                indexed = datetime.fromisoformat(clip["indexed_at"])
                if indexed.tzinfo is None:
                    indexed = indexed.replace(tzinfo=UTC)
                if now - indexed < GAP_GRACE:
                    continue
                services.index.update_clip(device_id, day, clip["key"], {"chain": "gap"})
                found.append(clip)
                if services.alerts is not None:
                    services.alerts.gap(device_id, clip)
    return found
