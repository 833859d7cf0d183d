"""When a clip object disappears (admin delete, retention, a lifecycle rule, someone with bucket access),
everything derived from it goes too: its thumbnail and its index record. Idempotent: a second delivery, or a
delete that retention already cleaned up, finds nothing left and changes nothing.
"""

from __future__ import annotations

import logging

from cryospy.common.objectkeys import ObjectKeyError, parse_clip_key, thumbnail_key

from .events import ObjectEvent
from .services import Services

log = logging.getLogger("cryospy.removal")


def clip_removed(services: Services, event: ObjectEvent) -> bool:
    try:
        ck = parse_clip_key(event.key)
    except ObjectKeyError:
        return False
    services.handler_client.delete_object(Bucket=services.bucket, Key=thumbnail_key(event.key))
    record = services.index.remove_clip(ck.device_id, ck.day, event.key)
    if record is not None:
        log.info("%s was removed from the bucket; dropped its thumbnail and index record", event.key)
    return record is not None
