"""The device API on the real runtime with real MinIO and a real SMTP server."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cryospy.functions.services import S3Identity
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.infra.server_config import ServerConfig
from tests.attack_support import forget_failures
from tests.conftest import PASSPHRASE
from tests.smtp_sink import SmtpSink
from tests.support import FakeCamera, clip_place, wait_for

pytestmark = pytest.mark.integration


def _http(method: str, url: str, *, body: object = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}


def _put(url: str, headers: dict[str, str], data: bytes) -> int:
    req = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _admin(dep) -> dict[str, str]:
    return {"Authorization": f"Bearer {dep.admin_token}"}


def test_slot_signed_before_disable_is_refused_by_minio(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "disable-me", tmp_path)
    slot, data = camera.reserve()
    assert _http("POST", f"{deployment.runtime_url}/v1/admin/devices/disable-me/disable",
                 headers=_admin(deployment))[0] == 200
    assert _put(slot.url, slot.headers, data) == 403       # MinIO itself refuses: the signing identity is off
    assert _http("POST", f"{deployment.runtime_url}/v1/admin/devices/disable-me/enable",
                 headers=_admin(deployment))[0] == 200
    assert _put(slot.url, slot.headers, data) == 200


def test_device_identity_cannot_write_outside_its_own_prefix(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "own-prefix", tmp_path)
    FakeCamera(deployment, "neighbour", tmp_path)
    device = runtime.services.devices.get("own-prefix")
    access, secret = device.upload_identity
    own = S3Identity(deployment.minio_url, access, secret).client()
    with pytest.raises(Exception, match="AccessDenied"):
        neighbour = runtime.services.devices.get("neighbour").storage_token
        own.put_object(Bucket=deployment.bucket, Key=f"clips/{neighbour}/2026/01/01/x.cse", Body=b"x")
    with pytest.raises(Exception, match="AccessDenied"):
        own.get_object(Bucket=deployment.bucket, Key=camera.upload())


def test_repeated_failures_mail_the_admin_once_across_a_restart_and_never_disable_the_device(deployment, minio,
                                                                                               tmp_path):
    with SmtpSink() as smtp:
        config = ServerConfig(smtp=smtp.settings(), alert_recipients=("owner@test.invalid",),
                              auth_events={"time_window_minutes": 60, "notification_threshold": 2,
                                           "min_interval_minutes": 30})
        bad = {"Authorization": "Basic " + base64.b64encode(b"brute:" + b"00" * 32).decode()}
        forget_failures(deployment)
        first = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600), config)
        first.unlock(PASSPHRASE)
        first.start()
        try:
            camera = FakeCamera(deployment, "brute", tmp_path)
            for _ in range(2):
                assert _http("GET", f"{deployment.runtime_url}/v1/device/settings", headers=bad)[0] == 401
            wait_for(lambda: smtp.messages, what="the auth-failure mail")
        finally:
            first.stop()
        second = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600), config)
        second.unlock(PASSPHRASE)
        second.start()
        try:
            for _ in range(8):
                assert _http("GET", f"{deployment.runtime_url}/v1/device/settings", headers=bad)[0] == 401
            assert second.services.devices.get("brute").enabled is True
            status, _ = _http("GET", f"{deployment.runtime_url}/v1/device/settings",
                              headers={"Authorization": camera.client._auth["Authorization"]})
            assert status == 200
            time.sleep(1)   # a second mail would have been sent by now
        finally:
            second.stop()
            forget_failures(deployment)
    [mail] = smtp.messages                   # the rate limit held across the restart
    assert mail["Subject"] == "CryoSpy repeated authentication failures detected"
    assert "Device: brute" in mail.get_content() and "127.0.0.1" in mail.get_content()
    assert "00" * 32 not in mail.get_content()


def test_delete_with_clips_removes_objects_and_index(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "short-lived", tmp_path)
    key = camera.upload()
    ck = clip_place(runtime, key)
    wait_for(lambda: runtime.services.index.get_clip(ck.device_id, ck.day, key), what="indexed")
    token = runtime.services.devices.get("short-lived").storage_token
    status, doc = _http("DELETE", f"{deployment.runtime_url}/v1/admin/devices/short-lived?clips=delete",
                        headers=_admin(deployment))
    assert status == 200 and doc["deleted_objects"] >= 1
    assert runtime.services.index.days("short-lived") == []
    listed = runtime.services.handler_client.list_objects_v2(Bucket=deployment.bucket, Prefix=f"clips/{token}/")
    assert listed.get("KeyCount", 0) == 0
    assert _http("GET", f"{deployment.runtime_url}/v1/admin/devices/short-lived", headers=_admin(deployment))[0] == 404


def test_clip_query_pages_newest_first(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "pager", tmp_path)
    keys = [camera.upload() for _ in range(3)]
    for key in keys:
        ck = clip_place(runtime, key)
        wait_for(lambda k=key, c=ck: runtime.services.index.get_clip(c.device_id, c.day, k), what="indexed")
    base = f"{deployment.runtime_url}/v1/admin/clips?device=pager&limit=2"
    status, page1 = _http("GET", base, headers=_admin(deployment))
    assert status == 200 and [c["key"] for c in page1["clips"]] == keys[::-1][:2]
    status, page2 = _http("GET", f"{base}&cursor={page1['next_cursor']}", headers=_admin(deployment))
    assert [c["key"] for c in page2["clips"]] == keys[:1] and page2["next_cursor"] is None
