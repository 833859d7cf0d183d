"""Deleting a device's clips and everything derived from them (device deletion with ``clips=delete``)."""

from __future__ import annotations

from cryospy.common.objectkeys import THUMB_PREFIX, owner_prefixes
from cryospy.functions.services import Services


def delete_device_clips(services: Services, device_id: str) -> int:
    """Delete every object of the device (clips and derived), then its index shards; returns objects deleted."""
    s3 = services.handler_client
    removed = 0
    clips = owner_prefixes(device_id, services.devices.get(device_id).storage_token)   # token, legacy name
    prefixes = [*clips, *(THUMB_PREFIX + p for p in clips)]
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                batch = keys[i:i + 1000]
                s3.delete_objects(Bucket=services.bucket, Delete={"Objects": batch, "Quiet": True})
                removed += len(batch)
    services.index.drop_device(device_id)
    return removed
