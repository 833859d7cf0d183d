"""Issue #12, "claims to make true": the bucket and MinIO's IAM never name a camera. Real MinIO, real runtime;
everything is looked at the way MinIO's operator (the root user) sees it."""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from minio import MinioAdmin
from minio.credentials import StaticProvider

from cryospy.common.objectkeys import is_storage_token, legacy_clip_key
from cryospy.common.sealed import seal
from cryospy.functions.services import S3Identity
from cryospy.infra.device_identities import (
    MinioDeviceIdentities,
    access_key_for,
    legacy_access_key,
    upgrade_legacy_identities,
)
from tests.support import FakeCamera, clip_place, sample_clip, wait_for

pytestmark = pytest.mark.integration


def _root(dep):  # type: ignore[no-untyped-def]
    return S3Identity(dep.minio_url, dep.minio_root_user, dep.minio_root_password).client()


def _admin(dep) -> MinioAdmin:
    url = urlsplit(dep.minio_url)
    return MinioAdmin(endpoint=url.netloc, secure=False,
                      credentials=StaticProvider(dep.minio_root_user, dep.minio_root_password))


def _everything_minio_holds(dep) -> tuple[list[str], bytes]:  # type: ignore[no-untyped-def]
    """Every key in the bucket, and the first 2 KiB (the clear sealed header) of every object."""
    s3 = _root(dep)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=dep.bucket)
            for o in page.get("Contents", [])]
    heads = b"".join(s3.get_object(Bucket=dep.bucket, Key=k, Range="bytes=0-2047")["Body"].read() for k in keys)
    return keys, heads


def test_the_minio_operator_finds_no_camera_name_in_keys_headers_or_iam(runtime, deployment, tmp_path: Path):
    name = "porch-" + secrets.token_hex(3)
    camera = FakeCamera(deployment, name, tmp_path)
    key = camera.upload()
    place = clip_place(runtime, key)
    record = wait_for(lambda: runtime.services.index.get_clip(place.device_id, place.day, key), what="indexed")
    assert place.device_id == name and record.device_id == name and record.thumb_key
    token = runtime.services.devices.get(name).storage_token
    assert is_storage_token(token) and key.startswith(f"clips/{token}/{place.day.replace('-', '/')}/")

    keys, heads = _everything_minio_holds(deployment)
    assert key in keys and record.thumb_key in keys
    assert not [k for k in keys if name in k]
    assert name.encode() not in heads          # the sealed headers carry the token, not the name
    admin = _admin(deployment)
    users, policies = admin.user_list(), admin.policy_list()
    assert name not in users + policies and legacy_access_key(name) not in users + policies
    assert access_key_for(token) in users


def test_a_device_identity_may_write_under_its_own_token_only(runtime, deployment, tmp_path: Path):
    FakeCamera(deployment, "own-token", tmp_path)
    FakeCamera(deployment, "other-token", tmp_path)
    own, other = (runtime.services.devices.get(d) for d in ("own-token", "other-token"))
    s3 = S3Identity(deployment.minio_url, *own.upload_identity).client()
    for prefix in (other.storage_token, "own-token", "other-token"):   # the neighbour, and legacy name prefixes
        with pytest.raises(Exception, match="AccessDenied"):
            s3.put_object(Bucket=deployment.bucket, Key=f"clips/{prefix}/2026/01/01/x.cse", Body=b"x")


def test_old_keys_that_name_the_camera_keep_working(runtime, deployment, tmp_path: Path):
    """A bucket from before storage tokens: a clip under clips/<name>/, signed as <name>. It is ingested, given
    a thumbnail, found by the media endpoint's lookup, and deleted with its device."""
    camera = FakeCamera(deployment, "legacy-cam", tmp_path)
    ck = legacy_clip_key("legacy-cam", camera.t0, 0)
    out = io.BytesIO()
    seal(io.BytesIO(sample_clip()), out, object_key=ck.key, device_id="legacy-cam", sequence=0,
         captured_at=ck.captured_at, content_type="video/mp4", prev_hash=camera.prev_hash,
         recipient=camera.recipient, signer=camera.signer)
    runtime.services.handler_client.put_object(Bucket=deployment.bucket, Key=ck.key, Body=out.getvalue())
    record = wait_for(lambda: runtime.services.index.get_clip("legacy-cam", ck.day, ck.key), what="legacy indexed")
    assert record.device_id == "legacy-cam" and record.thumb_key.startswith("derived/thumbs/clips/legacy-cam/")
    new_key = camera.upload()                                         # new clips of the same device: its token
    assert new_key.startswith(f"clips/{runtime.services.devices.get('legacy-cam').storage_token}/")
    wait_for(lambda: runtime.services.index.get_clip("legacy-cam", ck.day, new_key), what="new indexed")
    from cryospy.functions.devices import lifecycle
    lifecycle.delete_device(runtime.services, "legacy-cam", "delete")
    keys, _ = _everything_minio_holds(deployment)
    assert not [k for k in keys if "legacy-cam" in k] and new_key not in keys


def test_identities_from_before_tokens_are_replaced_at_start(runtime, deployment, tmp_path: Path):
    """An upgraded deployment: the device's MinIO identity is the old one (access key = hash of the name,
    policy on clips/<name>/*). The start-up upgrade swaps it for a token identity, and uploads work."""
    camera = FakeCamera(deployment, "upgraded-cam", tmp_path)
    device = runtime.services.devices.get("upgraded-cam")
    identities = MinioDeviceIdentities(deployment)
    admin = _admin(deployment)
    old_access, old_secret = legacy_access_key("upgraded-cam"), secrets.token_urlsafe(30)
    admin.policy_add(f"cryospy-device-{old_access}", policy={"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:PutObject"],
        "Resource": [f"arn:aws:s3:::{deployment.bucket}/clips/upgraded-cam/*"]}]})
    admin.user_add(old_access, old_secret)
    admin.attach_policy([f"cryospy-device-{old_access}"], user=old_access)
    identities.remove(device.upload_identity[0])
    runtime.services.devices.set_upload_identity("upgraded-cam", (old_access, old_secret))
    runtime.services.forget_upload_client("upgraded-cam")

    assert upgrade_legacy_identities(identities, runtime.services.devices) == 1
    runtime.services.forget_upload_client("upgraded-cam")
    assert runtime.services.devices.get("upgraded-cam").upload_identity[0] == access_key_for(device.storage_token)
    assert old_access not in admin.user_list()
    assert upgrade_legacy_identities(identities, runtime.services.devices) == 0     # idempotent
    key = camera.upload()
    wait_for(lambda: runtime.services.index.get_clip("upgraded-cam", clip_place(runtime, key).day, key),
             what="indexed after the upgrade")
