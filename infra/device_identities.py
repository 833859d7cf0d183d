"""One MinIO identity per device, used only to sign that device's upload slots.

Why per device: a presigned URL carries the rights of whoever signed it and stays valid until it expires.
With one identity per device, its policy can only ``PutObject`` under ``clips/<device>/``, and disabling or
deleting the device disables or removes the identity in MinIO, so slots handed out earlier stop working at
once. The device never sees these credentials; they live in the server's device registry.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit

from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException

from cryospy.common.objectkeys import CLIP_PREFIX

from .deployment import Deployment
from .errors import StorageError


def access_key_for(device_id: str) -> str:
    # MinIO access keys are short and plain; the device id may hold spaces and '+'.
    return "csd" + hashlib.sha256(device_id.encode()).hexdigest()[:16]


def policy_for(bucket: str, device_id: str) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:PutObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/{CLIP_PREFIX}{device_id}/*"]}]}


class MinioDeviceIdentities:
    def __init__(self, dep: Deployment):
        self.dep = dep

    def _admin(self) -> MinioAdmin:
        url = urlsplit(self.dep.minio_url)
        return MinioAdmin(endpoint=url.netloc, secure=url.scheme == "https",
                          credentials=StaticProvider(self.dep.minio_root_user, self.dep.minio_root_password))

    def _call(self, what: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except (MinioAdminException, OSError) as exc:
            raise StorageError(f"MinIO refused to {what}: {exc}. Is MinIO running at {self.dep.minio_url}?") from None

    def create(self, device_id: str) -> tuple[str, str]:
        access, secret = access_key_for(device_id), secrets.token_urlsafe(30)
        admin = self._admin()
        policy = f"cryospy-device-{access}"
        self._call("create the device's upload policy", admin.policy_add, policy,
                   policy=policy_for(self.dep.bucket, device_id))
        self._call("create the device's upload identity", admin.user_add, access, secret)
        try:
            admin.attach_policy([policy], user=access)
        except MinioAdminException as exc:
            if "already" not in str(exc).lower():
                raise StorageError(f"MinIO refused to attach the device policy: {exc}") from None
        return access, secret

    def set_enabled(self, device_id: str, enabled: bool) -> None:
        admin = self._admin()
        access = access_key_for(device_id)
        if enabled:
            self._call("enable the device's upload identity", admin.user_enable, access)
        else:
            self._call("disable the device's upload identity", admin.user_disable, access)

    def remove(self, device_id: str) -> None:
        admin = self._admin()
        access = access_key_for(device_id)
        for fn, arg in ((admin.user_remove, access), (admin.policy_remove, f"cryospy-device-{access}")):
            try:
                fn(arg)
            except MinioAdminException as exc:
                if "not" not in str(exc).lower():  # already gone is fine
                    raise StorageError(f"MinIO refused to remove the device identity: {exc}") from None
