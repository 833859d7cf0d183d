"""Every way CryoSpy deletes footage, in one place: one clip (retention, the admin), one clip unless it was
protected meanwhile, and all of a device's clips (device deletion with ``clips=delete``).

Deleting a clip deletes its thumbnail and its index record in the same step, after marking the record, so
the ObjectRemoved event that follows is known to be ours (:mod:`.removed` alerts on any other). Deletions and
protection changes of a device's clips happen under that device's lock (:func:`device_lock`), so a clip
protected after a retention pass listed it is kept.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from cryospy.common.objectkeys import THUMB_PREFIX, owner_prefixes
from cryospy.functions.bucket import Bucket
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.services import Services

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks[name]


def device_lock(device_id: str) -> threading.Lock:
    """The lock under which a device's clips are deleted or have their protection changed."""
    return _lock(device_id)


def delete_unless_protected(services: Services, clip: ClipRecord) -> ClipRecord | None:
    """With the clip's device lock held: read the clip again and delete it unless it is protected now (or gone).
    Returns the record that was deleted, or None."""
    current = services.index.get_clip(clip.device_id, clip.day, clip.key)
    if current is None or current.protected:
        return None
    delete_clip(services, current)
    return current


def delete_clip(services: Services, record: ClipRecord) -> None:
    """Delete a clip's objects (clip, thumbnail) and its index record. The record is marked first, so the
    removal event that follows is known to be ours (functions/retention/removed.py alerts on any other)."""
    services.index.update_clip(record.device_id, record.day, record.key, deleting=True)
    store = Bucket.of(services)
    for key in [record.key] + ([record.thumb_key] if record.thumb_key else []):
        store.delete(key)
    services.index.remove_clip(record.device_id, record.day, record.key)




def delete_device_clips(services: Services, device_id: str) -> int:
    """Delete every object of the device (clips and derived), then its index shards; returns objects deleted."""
    store = Bucket.of(services)
    clips = owner_prefixes(device_id, services.devices.get(device_id).storage_token)   # token, legacy name
    removed = sum(store.delete_many(o["Key"] for o in store.list(prefix))
                  for prefix in [*clips, *(THUMB_PREFIX + p for p in clips)])
    services.index.drop_device(device_id)
    return removed
