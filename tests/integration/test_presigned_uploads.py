"""The upload contract, enforced by a real MinIO: a slot accepts exactly the clip it was issued for."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from cryospy.functions import services as services_mod
from cryospy.functions.services import S3Identity
from tests.support import FakeCamera

pytestmark = pytest.mark.integration


def _put(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def camera(runtime, deployment, tmp_path: Path, request) -> FakeCamera:
    return FakeCamera(deployment, f"presign-{request.node.name[-20:].strip('_[]')}"[:40], tmp_path)


def test_exact_clip_is_accepted_once(camera: FakeCamera):
    _, data, stamp = camera.sealed()
    slot = camera.slot_for(data, stamp, 0)
    status, _ = _put(slot.url, slot.headers, data)
    assert status == 200
    # The same slot again: If-None-Match is signed in, so nothing can overwrite the clip, not even itself.
    status, body = _put(slot.url, slot.headers, data)
    assert status == 412, body


def test_other_length_is_refused(camera: FakeCamera):
    _, data, stamp = camera.sealed()
    slot = camera.slot_for(data, stamp, 0)
    headers = dict(slot.headers, **{"Content-Length": str(len(data) + 1)})
    status, body = _put(slot.url, headers, data + b"x")
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_other_bytes_of_same_length_are_refused(camera: FakeCamera):
    _, data, stamp = camera.sealed()
    slot = camera.slot_for(data, stamp, 0)
    tampered = bytes([data[0] ^ 1]) + data[1:]
    status, body = _put(slot.url, slot.headers, tampered)
    assert status == 400 and b"checksum" in body.lower(), body


def test_altered_signature_is_refused(camera: FakeCamera):
    _, data, stamp = camera.sealed()
    slot = camera.slot_for(data, stamp, 0)
    sig_at = slot.url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if slot.url[sig_at] != "0" else "1"
    status, body = _put(slot.url[:sig_at] + flipped + slot.url[sig_at + 1:], slot.headers, data)
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_altered_key_is_refused(camera: FakeCamera):
    _, data, stamp = camera.sealed()
    slot = camera.slot_for(data, stamp, 0)
    status, body = _put(slot.url.replace("-0.cse?", "-1.cse?"), slot.headers, data)
    assert status == 403, body


def test_expired_slot_is_refused(camera: FakeCamera, runtime):
    services_mod.configure(dataclasses.replace(runtime.services, slot_ttl_seconds=1))   # what the API sees
    try:
        _, data, stamp = camera.sealed()
        slot = camera.slot_for(data, stamp, 0)
    finally:
        services_mod.configure(runtime.services)
    time.sleep(2.2)
    status, body = _put(slot.url, slot.headers, data)
    assert status == 403 and b"expired" in body.lower(), body


def test_presigning_identity_can_only_put_clips(deployment, runtime, camera: FakeCamera):
    key = camera.upload()
    presigner = S3Identity(deployment.minio_url, deployment.presigner_user, deployment.presigner_secret).client()
    for call in (lambda: presigner.get_object(Bucket=deployment.bucket, Key=key),
                 lambda: presigner.list_objects_v2(Bucket=deployment.bucket),
                 lambda: presigner.delete_object(Bucket=deployment.bucket, Key=key),
                 lambda: presigner.put_object(Bucket=deployment.bucket, Key="derived/x", Body=b"x")):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"
    # …and the object is still there, unchanged.
    root = S3Identity(deployment.minio_url, deployment.minio_root_user, deployment.minio_root_password).client()
    body = root.get_object(Bucket=deployment.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(camera.last_upload).digest()
