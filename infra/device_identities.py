"""One MinIO identity per device, used only to sign that device's upload slots.

Why per device: a presigned URL carries the rights of whoever signed it and stays valid until it expires.
With one identity per device, its policy can only ``PutObject`` under ``clips/<storage token>/``, and
disabling or deleting the device disables or removes the identity in MinIO, so slots handed out earlier stop
working at once. The device never sees these credentials; they live in the server's device registry.

MinIO's IAM is readable by MinIO's operator, so nothing in it names the camera: the access key and the policy
name are derived from the storage token (a random pseudonym), the policy names only the token's prefix.
Identities made before storage tokens (access key = a hash of the device id, policy on ``clips/<device id>/``)
are replaced at start by :func:`upgrade_legacy_identities`.
"""

from __future__ import annotations

import hashlib
import secrets

import urllib3
from minio import MinioAdmin
from minio.error import MinioAdminException

from cryospy.common.objectkeys import CLIP_PREFIX, validate_storage_token
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.errors import StoreUnavailable

from .bootstrap import minio_admin
from .deployment import Deployment


def access_key_for(storage_token: str) -> str:
    """The identity's access key: from the token (random), so it says nothing about the camera."""
    return "csd" + hashlib.sha256(validate_storage_token(storage_token).encode()).hexdigest()[:16]


def legacy_access_key(device_id: str) -> str:
    """What identities were called before storage tokens: a hash of the device id (guessable from a name)."""
    return "csd" + hashlib.sha256(device_id.encode()).hexdigest()[:16]


def policy_for(bucket: str, storage_token: str) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:PutObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/{CLIP_PREFIX}{validate_storage_token(storage_token)}/*"]}]}


def _policy_name(access: str) -> str:
    return f"cryospy-device-{access}"


class MinioDeviceIdentities:
    def __init__(self, dep: Deployment):
        self.dep = dep

    def _admin(self) -> MinioAdmin:
        return minio_admin(self.dep)

    def _call(self, what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except (MinioAdminException, OSError, urllib3.exceptions.HTTPError) as exc:
            # Unreachable, or answering 5xx (a cluster without quorum): the caller's request can be tried again.
            raise StoreUnavailable(f"MinIO could not {what}: {exc}. Is MinIO running (and, for several drives or "
                                   f"nodes, are enough of them online) at {self.dep.minio_url}?") from None

    def create(self, storage_token: str) -> tuple[str, str]:
        access, secret = access_key_for(storage_token), secrets.token_urlsafe(30)
        admin = self._admin()
        policy = _policy_name(access)
        self._call("create the device's upload policy", admin.policy_add, policy,
                   policy=policy_for(self.dep.bucket, storage_token))
        self._call("create the device's upload identity", admin.user_add, access, secret)
        try:
            admin.attach_policy([policy], user=access)
        except MinioAdminException as exc:
            if "already" not in str(exc).lower():
                raise StoreUnavailable(f"MinIO refused to attach the device policy: {exc}") from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            raise StoreUnavailable(f"MinIO could not attach the device policy: {exc}") from None
        return access, secret

    def set_enabled(self, access: str, enabled: bool) -> None:
        """``access``: the identity's access key, as the device registry keeps it."""
        admin = self._admin()
        if enabled:
            self._call("enable the device's upload identity", admin.user_enable, access)
        else:
            self._call("disable the device's upload identity", admin.user_disable, access)

    def remove(self, access: str) -> None:
        admin = self._admin()
        for fn, arg in ((admin.user_remove, access), (admin.policy_remove, _policy_name(access))):
            try:
                fn(arg)
            except MinioAdminException as exc:
                if "not" not in str(exc).lower():  # already gone is fine
                    raise StoreUnavailable(f"MinIO refused to remove the device identity: {exc}") from None
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                raise StoreUnavailable(f"MinIO could not remove the device identity: {exc}") from None


def upgrade_legacy_identities(identities: MinioDeviceIdentities, registry: DeviceRegistry) -> int:
    """Give every device whose MinIO identity still names it (made before storage tokens) a new identity on its
    token's prefix, then remove the old one; returns how many were replaced. Idempotent: a crash between the
    steps leaves either the old identity in the registry (done again next start) or the new one (done)."""
    replaced = 0
    for device in registry.list():
        if device.upload_identity is None or device.upload_identity[0] != legacy_access_key(device.device_id):
            continue
        new = identities.create(device.storage_token)
        if not device.enabled:
            identities.set_enabled(new[0], False)
        registry.set_upload_identity(device.device_id, new)
        identities.remove(device.upload_identity[0])
        replaced += 1
    return replaced
