"""When a clip object disappears (admin delete, retention, a lifecycle rule, someone with bucket access),
everything derived from it goes too: its thumbnail and its index record. Idempotent: a second delivery, or a
delete that retention already cleaned up, finds nothing left and changes nothing.

The event is a claim, not a fact: whoever holds the webhook token can post one. So the bucket is asked first,
and a removal event for an object that still exists changes nothing (the clip stays indexed, its thumbnail
stays). The reconciler repairs the other order too: a tombstone whose object exists is ingested again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from cryospy.common.objectkeys import ObjectKeyError, parse_clip_key, thumbnail_key
from cryospy.common.timefmt import utc_stamp_seconds
from cryospy.functions.bucket import Bucket
from cryospy.functions.clips.place import locate
from cryospy.functions.errors import NotFound
from cryospy.functions.events import ObjectEvent
from cryospy.functions.services import Services

log = logging.getLogger(__name__)


def clip_removed(services: Services, event: ObjectEvent) -> bool:
    """Drop what was derived from a removed clip. CryoSpy marks its own deletions (retention, the admin, a
    deleted device) before it makes them; any other removal (someone with bucket credentials, a lifecycle rule
    nobody told CryoSpy about) leaves a tombstone in the index, which the dashboard shows, and mails an alert:
    footage must not disappear quietly."""
    try:
        ck = parse_clip_key(event.key)
    except ObjectKeyError:
        return False
    store = Bucket.of(services)
    if store.head(event.key) is not None:
        log.warning("ignored a removal event for %s: the object is still in the bucket (a forged or stale "
                    "event; whoever can post to the webhook holds its token)", event.key)
        return False
    store.delete(thumbnail_key(event.key))
    try:
        device_id = locate(services.devices, event.key).device_id
    except NotFound:    # its device was deleted with its clips: no index shard is left to tidy
        return False
    record = services.index.get_clip(device_id, ck.day, event.key)
    if record is None:
        return False
    if record.deleting or _device_leaving(services, device_id):
        services.index.remove_clip(device_id, ck.day, event.key)
        log.info("%s was removed from the bucket; dropped its thumbnail and index record", event.key)
        return True
    if record.missing:
        return False
    services.index.update_clip(
        device_id, ck.day, event.key, missing=True,
        missing_since=utc_stamp_seconds(datetime.now(UTC)),
        sealed_size=0, thumb_size=0, thumb_key=None)
    log.warning("%s was deleted from the bucket by something other than CryoSpy; kept a tombstone", event.key)
    services.alerts.deleted_outside(device_id, event.key, record)
    return True


def _device_leaving(services: Services, device_id: str) -> bool:
    try:
        return services.devices.get(device_id).retired
    except NotFound:
        return True
