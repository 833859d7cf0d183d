"""Ingest and quarantine on moto's S3 (see conftest.py for what stays on real MinIO)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cryospy.common.objectkeys import clip_key, thumbnail_key
from cryospy.common.sealed import open_bytes
from cryospy.functions.errors import PermanentEventError
from tests.support import clip_with_meta


def test_a_sealed_clip_is_indexed_with_a_sealed_thumbnail_and_a_replay_changes_nothing(world) -> None:
    camera = world.camera("porch")
    key = world.upload(camera, clip_with_meta(motion=True, peak_s=1.2))
    record = world.indexed("porch", key)
    assert record.chain == "first" and record.motion is True and record.peak_s == 1.2
    assert record.fragments and record.init_size > 0 and record.sealed_size == world.objects(key)[key]
    assert record.thumb_key == thumbnail_key(key) and 0 < record.thumb_size < record.sealed_size
    sealed = world.s3.get_object(Bucket=world.services.bucket, Key=record.thumb_key)["Body"].read()
    keys = world.services.vault.keys()
    jpeg = open_bytes(sealed, keyring=keys, signer_public_key=keys.server_signing_key.public_key(),
                      expected_object_key=record.thumb_key)
    assert jpeg.startswith(b"\xff\xd8") and jpeg[:64] not in sealed, "no plaintext JPEG in the bucket"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] <= 480 and image.shape[0] <= 360

    thumbs = world.objects("derived/")
    for _ in range(3):
        world.created(key)
    assert world.indexed("porch", key) == record
    assert world.objects("derived/") == thumbs, "a replay re-seals no thumbnail"
    assert world.services.index.usage("porch").clips == 1


def _reason(world, key: str) -> str:
    head = world.s3.head_object(Bucket=world.services.bucket, Key="quarantine/" + key)
    return head["Metadata"]["cryospy-reason"]


def test_bytes_that_are_not_a_sealed_clip_are_quarantined_with_the_reason(world) -> None:
    camera = world.camera("garage")
    key, _, _ = camera.sealed()
    world.put(key, b"not sealed at all")
    with pytest.raises(PermanentEventError, match="failed verification"):
        world.created(key)
    assert key not in world.objects("clips/") and world.indexed("garage", key) is None
    assert "failed verification" in _reason(world, key)
    with pytest.raises(PermanentEventError, match="no longer exists"):
        world.created(key)   # the same event again: dead-lettered, the quarantined copy left alone
    assert list(world.objects("quarantine/")) == ["quarantine/" + key]


def test_a_clip_under_another_clips_key_an_unknown_owner_and_a_disabled_device_are_quarantined(world) -> None:
    camera = world.camera("yard")
    first, data, _ = camera.sealed()
    second, _, _ = camera.sealed()
    world.put(second, data)               # sealed for one key, stored under another: a splice
    ghost = world.put(clip_key(world.services.devices.new_token(), camera.t0, 0).key, data)   # no device has it
    for key, why in ((second, "failed verification"), (ghost, "no enrolled device owns")):
        with pytest.raises(PermanentEventError, match=why):
            world.created(key)
        assert why in _reason(world, key)
    world.services.devices.set_enabled("yard", False)
    world.put(first, data)
    with pytest.raises(PermanentEventError, match="disabled"):
        world.created(first)
    assert "disabled" in _reason(world, first) and "yard" not in _reason(world, first), "no camera name in the bucket"
    assert world.objects("clips/") == {}


def test_quarantine_keeps_the_newest_uploads_within_its_cap_and_counts_them(world) -> None:
    camera = world.camera("noisy")
    world.with_options(quarantine_limit_bytes=2500)
    keys = [camera.sealed()[0] for _ in range(4)]   # keys in time order
    for key in keys:
        world.put(key, b"x" * 1000)
        with pytest.raises(PermanentEventError):
            world.created(key)
    assert set(world.objects("quarantine/")) == {"quarantine/" + k for k in keys[-2:]}
    assert world.services.index.usage("noisy").quarantine_bytes == 2000
