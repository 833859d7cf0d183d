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

from cryospy.functions.index.records import ClipRecord
from cryospy.functions.services import Services

GAP_GRACE = timedelta(minutes=10)
NEWEST_GRACE = timedelta(minutes=2)


def _verdict(record: ClipRecord, predecessor: ClipRecord | None) -> str:
    if record.sequence == 0:
        return "first"
    if predecessor is None:
        return "awaiting-predecessor"
    return "ok" if predecessor.header_hash == record.prev_hash else "broken-link"


def link(services: Services, record: ClipRecord) -> str:
    predecessor = None
    if record.sequence > 0:
        predecessor = services.index.find_sequence(record.device_id, record.sequence - 1, record.day, -1)
    verdict = _verdict(record, predecessor)
    if verdict == "broken-link":
        services.alerts.tampering(record.device_id, record.key,
                                  f"clip #{record.sequence} does not chain to clip #{record.sequence - 1}")
    return verdict


def relink_successor(services: Services, record: ClipRecord) -> None:
    successor = services.index.find_sequence(record.device_id, record.sequence + 1, record.day, +1)
    if successor is None or successor.chain not in ("awaiting-predecessor", "gap"):
        return
    verdict = _verdict(successor, record)
    services.index.update_clip(successor.device_id, successor.day, successor.key, chain=verdict)


def audit_gaps(services: Services, now: datetime | None = None) -> list[ClipRecord]:
    """Turn predecessors missing for longer than the grace period into gaps, alert once each."""
    now = now or datetime.now(UTC)
    found = []
    for device_id in services.index.devices():
        for day in services.index.days(device_id, newest=3):
            for clip in services.index.clips_for_day(device_id, day):
                if clip.chain != "awaiting-predecessor":
                    continue
                indexed = datetime.fromisoformat(clip.indexed_at)
                if indexed.tzinfo is None:
                    indexed = indexed.replace(tzinfo=UTC)
                if now - indexed < GAP_GRACE:
                    continue
                services.index.update_clip(device_id, day, clip.key, chain="gap")
                found.append(clip)
                services.alerts.gap(device_id, clip)
    return found


def _instant(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def audit_newest(services: Services, now: datetime | None = None,
                 grace: timedelta = NEWEST_GRACE) -> list[tuple[str, int]]:
    """The edge of the chain: a device's newest clip has no successor to reveal that it vanished.

    A heartbeat says which sequence the camera sealed last (``last_sequence``) and how many clips wait in its
    spool. With an empty spool that clip has been uploaded; if the device has kept talking to the server for
    ``grace`` since, and the index still lacks that sequence (not even a tombstone), the clip was withheld or
    removed before ingest. Each missing sequence is mailed once. Returns ``(device, sequence)`` pairs."""
    now = now or datetime.now(UTC)
    found = []
    for device in services.devices.list():
        beat = device.heartbeat or {}
        last, received = beat.get("last_sequence"), beat.get("received_at")
        if device.retired or not isinstance(last, int) or last < 0 or not received or beat.get("spool_depth"):
            continue
        when = _instant(received)
        if now - when < grace or not device.last_seen or _instant(device.last_seen) < when + grace:
            continue   # the clip may still be on its way, or the device went quiet (an outage is not a loss)
        days = services.index.days(device.device_id, newest=1)
        if days and services.index.find_sequence(device.device_id, last, days[-1], -1) is not None:
            continue
        found.append((device.device_id, last))
        services.alerts.newest_missing(device.device_id, last, received)
    return found
