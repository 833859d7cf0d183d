"""MinIO notification → webhook → job queue → handler → index, against a real MinIO."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cryospy.common.objectkeys import parse_clip_key
from cryospy.infra.runtime import Runtime, RuntimeOptions
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, clip_place, wait_for

pytestmark = pytest.mark.integration


def _jobs_for(runtime, key: str) -> list[tuple[str, str, int]]:
    rows = runtime.queue._db.execute("SELECT handler, state, attempts, event FROM jobs").fetchall()
    return [(h, s, a) for h, s, a, ev in rows if json.loads(ev)["key"] == key]   # stored decoded, once


def _indexed(runtime, key: str):
    ck = clip_place(runtime, key)
    return runtime.services.index.get_clip(ck.device_id, ck.day, key)


def test_one_upload_one_invocation_with_decoded_key(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "porch cam+2", tmp_path)  # a space and a '+' in the name, never in a key
    camera.confirm = False                                       # only MinIO's notification brings it in
    key = camera.upload()
    assert "porch" not in key                                  # the key carries the storage token
    record = wait_for(lambda: _indexed(runtime, key), what="the clip in the index")
    assert record.device_id == "porch cam+2"
    assert record.width == 160 and record.height == 96
    assert 1.5 <= record.duration_s <= 2.5
    wait_for(lambda: _jobs_for(runtime, key) and _jobs_for(runtime, key)[0][1] == "done", what="job done")
    assert _jobs_for(runtime, key) == [("on_clip_created", "done", 1)]
    clips = runtime.services.index.clips_for_day("porch cam+2", record.day)
    assert [c.key for c in clips] == [key]


def test_events_while_runtime_is_down_are_replayed(deployment, minio, tmp_path: Path):
    first = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600))
    first.unlock(PASSPHRASE)
    first.start()
    camera = FakeCamera(deployment, "outage-cam", tmp_path)
    camera.confirm = False
    slots = [camera.reserve() for _ in range(3)]
    first.stop()
    # The runtime is down; MinIO accepts the uploads and keeps their events in its queue_dir.
    keys = [camera.put(slot, data) for slot, data in slots]
    second = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600))
    second.unlock(PASSPHRASE)
    second.start()
    try:
        for key in keys:
            wait_for(lambda k=key: _indexed(second, k), timeout=60, what=f"{key} replayed")
        day = parse_clip_key(keys[0]).day
        assert [c.key for c in second.services.index.clips_for_day("outage-cam", day)] == keys
        for key in keys:
            wait_for(lambda k=key: [j[1] for j in _jobs_for(second, k)] == ["done"], what="jobs done")
    finally:
        second.stop()


def test_confirmation_and_notification_are_one_event(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "confirming", tmp_path)
    received = runtime.webhook.records_received
    key = camera.upload()                      # PUT, then confirm: ingest starts before MinIO's notification
    wait_for(lambda: _indexed(runtime, key), what="indexed")
    # MinIO's queue_dir store delivers the notification a second or two later; it must not add a job.
    before = runtime.queue._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    wait_for(lambda: runtime.webhook.records_received > received, timeout=30, what="MinIO's notification")
    assert [j[:2] for j in _jobs_for(runtime, key)] == [("on_clip_created", "done")]
    assert runtime.queue._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == before


def _post(url: str, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _record(bucket: str, key: str) -> bytes:
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}", "Records": [{
        "eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": bucket},
                                                    "object": {"key": key, "size": 10}}}]}).encode()


def test_bad_webhook_requests_are_refused_and_change_nothing(runtime, deployment):
    url = deployment.webhook_url
    before = runtime.queue.counts()
    good = _record(deployment.bucket, "clips%2Fx%2F2026%2F01%2F01%2F20260101T000000.000Z-0.cse")
    assert _post(url, good, None) == 401
    assert _post(url, good, "wrong-token") == 401
    assert _post(url, b"{not json", deployment.webhook_token) == 400
    assert _post(url, b'{"Records": "nope"}', deployment.webhook_token) == 400
    assert _post(url, b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}', deployment.webhook_token) == 400
    assert _post(url, _record("someone-elses-bucket", "clips%2Fa.cse"), deployment.webhook_token) == 400
    assert runtime.queue.counts() == before


def test_unroutable_and_unprocessable_events_are_dead_lettered_not_retried(runtime, deployment):
    token = deployment.webhook_token
    # Known bucket, but no handler wants this key: acknowledged (MinIO's queue keeps flowing) and dead-lettered.
    assert _post(deployment.webhook_url, _record(deployment.bucket, "elsewhere%2Fthing.bin"), token) == 200
    # A clip key for a device nobody enrolled: the handler refuses it for good.
    ghost = "clips/ghost/2026/01/01/20260101T000000.000Z-0.cse"
    assert _post(deployment.webhook_url, _record(deployment.bucket, urllib.parse.quote_plus(ghost, safe="")),
                 token) == 200

    def reasons():
        return {j.key: j.reason for j in runtime.queue.dead_letters()}

    found = wait_for(lambda: (r := reasons()) and "elsewhere/thing.bin" in r and ghost in r and r,
                     what="two dead letters")
    assert "no handler matches" in found["elsewhere/thing.bin"]
    assert "no enrolled device owns this key" in found[ghost]
