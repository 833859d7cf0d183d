"""Event handlers on real MinIO and a real SMTP server: idempotence, thumbnails, quarantine, retention, mail."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest

from cryospy.common.keys import KeyStore
from cryospy.common.objectkeys import thumbnail_key
from cryospy.common.sealed import open_bytes
from cryospy.functions.app import OBJECT_HANDLERS
from cryospy.functions.events import ObjectEvent
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.infra.server_config import ServerConfig
from tests.conftest import PASSPHRASE
from tests.smtp_sink import SmtpSink
from tests.support import FakeCamera, clip_place, clip_with_meta, sample_clip, wait_for

pytestmark = pytest.mark.integration


def _indexed(rt, key: str):
    ck = clip_place(rt, key)
    return rt.services.index.get_clip(ck.device_id, ck.day, key)


def _objects(rt, prefix: str) -> dict[str, str]:
    s3 = rt.services.handler_client
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=rt.services.bucket, Prefix=prefix)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def test_every_event_three_times_gives_the_same_state_as_once(mailing_runtime, deployment, tmp_path: Path):
    rt, smtp = mailing_runtime
    camera = FakeCamera(deployment, "thrice", tmp_path)
    key = camera.upload(clip_with_meta(motion=True, peak_s=1.2))
    record = wait_for(lambda: _indexed(rt, key), what="indexed")

    def mails() -> list:
        # Only this camera's: MinIO may still deliver an earlier test's events to this runtime (same bucket).
        return [m for m in smtp.messages if "thrice" in m.as_string()]

    wait_for(mails, what="the motion mail")
    thumbs = f"derived/thumbs/clips/{rt.services.devices.get('thrice').storage_token}/"
    state = (record, _objects(rt, thumbs), len(mails()))
    event = ObjectEvent("s3:ObjectCreated:Put", deployment.bucket, key, len(camera.last_upload), None, "x", None)
    for _ in range(3):
        OBJECT_HANDLERS["on_clip_created"](event)
    again = (_indexed(rt, key), _objects(rt, thumbs), len(mails()))
    assert again[0] == state[0]
    assert again[1:] == state[1:]
    assert record.motion is True and record.peak_s == 1.2
    assert [m["Subject"] for m in mails()] == ["CryoSpy motion detected"]


def test_thumbnail_is_a_sealed_jpeg_within_480x360_and_derived_bytes_are_small(runtime, deployment, tmp_path):
    import cv2
    import numpy as np

    camera = FakeCamera(deployment, "thumbs", tmp_path)
    key = camera.upload(clip_with_meta(motion=False))
    record = wait_for(lambda: _indexed(runtime, key), what="indexed")
    assert record.thumb_key == thumbnail_key(key)
    s3 = runtime.services.handler_client
    sealed = s3.get_object(Bucket=deployment.bucket, Key=record.thumb_key)["Body"].read()
    assert b"\xff\xd8" not in sealed[:4096]                       # no plaintext JPEG in the bucket
    keys = KeyStore.load(deployment.keys_path).unlock(PASSPHRASE)
    jpeg = open_bytes(sealed, keyring=keys, signer_public_key=keys.server_signing_key.public_key(),
                      expected_object_key=record.thumb_key)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] <= 480 and image.shape[0] <= 360
    assert record.fragments and record.init_size > 0
    assert record.chain == "first"
    assert record.thumb_size < record.sealed_size


def test_corrupt_unknown_and_disabled_clips_are_quarantined_and_the_queue_keeps_flowing(runtime, deployment,
                                                                                        tmp_path: Path):
    camera = FakeCamera(deployment, "bad-apples", tmp_path)
    root = runtime.services.handler_client
    # 1. bytes that are not a sealed clip, under a valid clip key
    bogus = "clips/bad-apples/2026/01/02/20260102T000000.000Z-900.cse"
    root.put_object(Bucket=deployment.bucket, Key=bogus, Body=b"not sealed at all")
    # 2. a clip of a device nobody enrolled
    ghost = "clips/nobody/2026/01/02/20260102T000000.000Z-0.cse"
    root.put_object(Bucket=deployment.bucket, Key=ghost, Body=b"whatever")
    # 3. a good clip, which must still be processed after the bad ones
    good = camera.upload()
    wait_for(lambda: _indexed(runtime, good), what="the good clip")
    # Wait for these two by name: earlier tests in the session may have quarantined objects of their own.
    wait_for(lambda: {"quarantine/" + bogus, "quarantine/" + ghost} <= set(_objects(runtime, "quarantine/")),
             what="both bad objects quarantined")
    assert bogus not in _objects(runtime, "clips/") and ghost not in _objects(runtime, "clips/")

    def reasons() -> list[str]:
        return [j.reason for j in runtime.queue.dead_letters()]

    wait_for(lambda: any("failed verification" in r for r in reasons())
             and any("no enrolled device owns" in r and "nobody" in r for r in reasons()),
             what="both dead-lettered with a reason")
    # 4. a disabled device's clip (signed before it was disabled, uploaded by someone with bucket access)
    slot, data = camera.reserve()
    runtime.services.devices.set_enabled("bad-apples", False)
    root.put_object(Bucket=deployment.bucket, Key=slot.key, Body=data)
    wait_for(lambda: "quarantine/" + slot.key in _objects(runtime, "quarantine/"), what="disabled clip quarantined")


def test_quota_holds_under_concurrent_uploads_oldest_first_and_warns_once(deployment, minio, tmp_path: Path):
    with SmtpSink() as smtp:
        config = ServerConfig(smtp=smtp.settings(), alert_recipients=("owner@test.invalid",))
        rt = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600, workers=2), config)
        rt.unlock(PASSPHRASE)
        rt.start()
        try:
            camera = FakeCamera(deployment, "tight", tmp_path)
            clip = sample_clip()
            req = urllib.request.Request(f"{deployment.runtime_url}/v1/admin/devices/tight/settings", method="PATCH",
                                         data=json.dumps({"storage_limit_megabytes": 1}).encode(),
                                         headers={"Authorization": f"Bearer {deployment.admin_token}",
                                                  "Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
            per_clip = len(clip) + 400
            fits = (1024 * 1024) // (per_clip + 2000)
            first = [camera.upload(clip) for _ in range(fits - 1)]      # nearly full
            for key in first:
                wait_for(lambda k=key: _indexed(rt, k), what="pre-fill indexed")
            slots = [camera.reserve(clip) for _ in range(10)]
            threads = [threading.Thread(target=camera.put, args=s) for s in slots]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            newest = [s.key for s, _ in slots]
            wait_for(lambda: all(_indexed(rt, k) for k in newest), timeout=90, what="burst indexed")
            wait_for(lambda: rt.queue.counts().get("pending", 0) == 0 and not rt.queue.counts().get("running"),
                     what="queue settled")
            used = rt.services.index.usage("tight").bytes
            assert used <= 1024 * 1024
            kept = [c.key for c in rt.services.index.oldest_unprotected("tight")]
            assert kept == sorted(kept) and set(newest) <= set(kept)      # the oldest went, the newest stayed
            assert set(first[:2]).isdisjoint(kept)
            token = rt.services.devices.get("tight").storage_token
            assert set(_objects(rt, f"clips/{token}/")) == set(kept)        # no orphans, nothing lost in between
        finally:
            rt.stop()
        subjects = [m["Subject"] for m in smtp.messages]
        assert subjects.count("CryoSpy client storage capacity reached") == 1
