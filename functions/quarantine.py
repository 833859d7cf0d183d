"""Quarantine: a clip that cannot be trusted is moved aside with its reason, never deleted.

The object is copied to ``quarantine/<original key>`` with the reason in its metadata, then removed from
``clips/`` (so retention, the index and the dashboard never treat it as footage). An admin can inspect or
export it with the bucket tools; ``cryospy events dead`` lists the matching dead letter.
"""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from .bucket import is_missing
from .services import Services

log = logging.getLogger("cryospy.quarantine")
PREFIX = "quarantine/"


def quarantine(services: Services, key: str, reason: str) -> bool:
    s3 = services.handler_client
    target = PREFIX + key
    try:
        s3.copy_object(Bucket=services.bucket, Key=target, CopySource={"Bucket": services.bucket, "Key": key},
                       Metadata={"cryospy-reason": reason.encode("ascii", "replace").decode()[:1000]},
                       MetadataDirective="REPLACE")
    except ClientError as exc:
        if is_missing(exc):
            return False   # already moved by an earlier delivery of the same event
        raise
    s3.delete_object(Bucket=services.bucket, Key=key)
    log.warning("quarantined %s -> %s: %s", key, target, reason)
    return True
