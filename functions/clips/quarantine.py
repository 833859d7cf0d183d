"""Quarantine: a clip that cannot be trusted is moved aside with its reason.

The object is copied to ``quarantine/<original key>`` with the reason in its metadata, then removed from
``clips/`` (so retention, the index and the dashboard never treat it as footage). An admin can inspect or
export it with the bucket tools; ``cryospy events dead`` lists the matching dead letter.

Quarantine is bounded, because a compromised camera could otherwise fill the disk with uploads that fail
verification (each slot allows up to ``max_clip_megabytes``): per device it keeps the newest uploads within
``storage.quarantine_megabytes`` (:func:`prune`), what it keeps counts against the device's storage quota
(the index's usage row carries ``quarantine_bytes``; retention prunes quarantine before it deletes footage),
and slots are rate-limited per device (functions/uploads/slot_limiter.py).
"""

from __future__ import annotations

import logging

from cryospy.common.objectkeys import ObjectKeyError, owner_prefixes, parse_clip_key
from cryospy.functions.bucket import Bucket
from cryospy.functions.errors import NotFound, ObjectMissing
from cryospy.functions.services import Services

log = logging.getLogger(__name__)
PREFIX = "quarantine/"


def quarantine(services: Services, key: str, reason: str) -> bool:
    store = Bucket.of(services)
    target = PREFIX + key
    try:
        store.copy(key, target, Metadata={"cryospy-reason": reason.encode("ascii", "replace").decode()[:1000]},
                   MetadataDirective="REPLACE")
    except ObjectMissing:
        return False   # already moved by an earlier delivery of the same event
    store.delete(key)
    log.warning("quarantined %s -> %s: %s", key, target, reason)
    try:
        owner = parse_clip_key(key).owner
    except ObjectKeyError:
        return True   # not a key a slot could name: only someone with bucket credentials wrote it
    try:
        device_id = services.devices.resolve(owner).device_id
    except NotFound:
        device_id = owner   # a token no device has (or a deleted device's name): its own prefix is pruned
    prune(services, device_id, services.quarantine_limit_bytes)
    return True


def prune(services: Services, device_id: str, cap_bytes: int) -> int:
    """Delete the device's oldest quarantined uploads until the rest fit in ``cap_bytes``; record what is left
    in the device's usage (enrolled devices only) and return it. Idempotent: it sets, never adds."""
    store = Bucket.of(services)
    token = services.devices.get(device_id).storage_token if services.devices.exists(device_id) else None
    prefixes = [PREFIX + p for p in owner_prefixes(device_id, token)]   # its token's, and legacy keys'
    held = [o for prefix in prefixes for o in store.list(prefix)]
    held.sort(key=lambda o: (o["LastModified"], o["Key"]), reverse=True)   # newest first
    kept = 0
    for obj in held:
        if kept + obj["Size"] <= cap_bytes:
            kept += obj["Size"]
            continue
        store.delete(obj["Key"])
        log.warning("quarantine of %s is over %d bytes: deleted %s", device_id, cap_bytes, obj["Key"])
    if services.devices.exists(device_id):
        services.index.set_quarantined(device_id, kept)
    return kept
