"""Retention, removal and the chain check on moto's S3 (see conftest.py for what stays on real MinIO)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from cryospy.common.objectkeys import thumbnail_key
from cryospy.functions.clips import chain_check
from cryospy.functions.retention import deletion, policy
from tests.support import sample_clip

MIB = 1024 * 1024


def _padded(size: int) -> bytes:
    """A real clip plus a ``free`` box, ``size`` bytes in all: a few of these fill a 1 MiB quota."""
    clip = sample_clip()
    return clip + struct.pack(">I4s", size - len(clip), b"free") + bytes(size - len(clip) - 8)


def test_retention_deletes_the_oldest_unprotected_clips_over_the_quota_with_their_thumbnails(world) -> None:
    camera = world.camera("attic", {"storage_limit_megabytes": 1})
    keys = [world.upload(camera, _padded(300_000)) for _ in range(3)]
    assert world.services.index.usage("attic").clips == 3          # 3 x ~300 kB fit in 1 MiB
    world.services.index.update_clip("attic", world.indexed("attic", keys[0]).day, keys[0], protected=True)
    keys += [world.upload(camera, _padded(300_000)) for _ in range(2)]
    unprotected = [c.key for c in world.services.index.oldest_unprotected("attic")]
    assert unprotected == [keys[3], keys[4]], "the oldest unprotected clips went"
    assert world.indexed("attic", keys[0]).protected, "the protected clip stays"
    kept = [keys[0], *unprotected]
    assert world.services.index.usage("attic").bytes <= MIB
    token = world.services.devices.get("attic").storage_token
    assert set(world.objects(f"clips/{token}/")) == set(kept)
    assert set(world.objects("derived/")) == {thumbnail_key(k) for k in kept}


def test_retention_deletes_clips_older_than_the_age_limit(world) -> None:
    camera = world.camera("shed", {"retention_days": 2})
    camera.t0 = datetime.now(UTC).replace(microsecond=0)           # young enough for the pass ingest runs
    keys = [world.upload(camera) for _ in range(3)]
    assert world.services.index.usage("shed").clips == 3
    now = camera.t0 + timedelta(days=2, seconds=15)               # clips 0 and 1 (t0, t0+10 s) are too old
    assert policy.enforce_device(world.services, "shed", now).deleted == tuple(keys[:2])
    assert [c.key for c in world.services.index.oldest_unprotected("shed")] == keys[2:]
    assert set(world.objects("clips/")) == {keys[2]}


def test_removal_events_drop_ours_tombstone_others_and_ignore_forgeries(world) -> None:
    camera = world.camera("hall")
    ours, outside, forged = (world.upload(camera) for _ in range(3))
    deletion.delete_clip(world.services, world.indexed("hall", ours))
    world.removed(ours)
    assert world.indexed("hall", ours) is None and thumbnail_key(ours) not in world.objects("derived/")

    world.s3.delete_object(Bucket=world.services.bucket, Key=outside)   # someone with bucket credentials
    world.removed(outside)
    tomb = world.indexed("hall", outside)
    assert tomb.missing is True and tomb.thumb_key is None and tomb.sealed_size == 0
    assert thumbnail_key(outside) not in world.objects("derived/")
    world.removed(outside)
    assert world.indexed("hall", outside) == tomb, "a second delivery changes nothing"

    before = world.indexed("hall", forged)
    world.removed(forged)                                            # the object is still there
    assert world.indexed("hall", forged) == before and thumbnail_key(forged) in world.objects("derived/")


def test_the_chain_check_converges_whatever_the_order_and_names_a_broken_link(world) -> None:
    camera = world.camera("door")
    sealed = [camera.sealed() for _ in range(3)]
    camera.prev_hash = bytes(32)                                     # clip 3 does not chain to clip 2
    sealed.append(camera.sealed())
    for index in (0, 2):
        world.created(world.put(*sealed[index][:2]))
    assert world.indexed("door", sealed[2][0]).chain == "awaiting-predecessor"
    world.created(world.put(*sealed[1][:2]))                         # the late clip re-checks its successor
    world.created(world.put(*sealed[3][:2]))
    assert [world.indexed("door", key).chain for key, _, _ in sealed] == ["first", "ok", "ok", "broken-link"]


def test_a_predecessor_missing_past_the_grace_period_becomes_a_gap(world) -> None:
    camera = world.camera("gate")
    camera.sealed()                                                  # clip 0 never arrives
    key = world.upload(camera)
    assert chain_check.audit_gaps(world.services) == []             # still within the grace period
    later = datetime.now(UTC) + chain_check.GAP_GRACE + timedelta(minutes=1)
    assert [c.key for c in chain_check.audit_gaps(world.services, later)] == [key]
    assert world.indexed("gate", key).chain == "gap"
