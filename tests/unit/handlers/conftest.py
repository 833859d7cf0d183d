"""Fast unit tests of the bucket-event handlers on moto's in-process S3: the one place they get their Services.

The handlers (ingest, quarantine, retention, removal, the chain check) only GET, PUT, HEAD, COPY, DELETE and
list objects with the handler's credentials; moto answers those the way S3 and MinIO do, in-process, so the
handler logic is tested in milliseconds per clip. Everything else is real: the key vault, the device registry,
the encrypted index, sealing, the MP4 parser, PyAV thumbnails. Events go in through the typed
handlers the ``@app.on_s3_event`` registrations name (``OBJECT_HANDLERS``), as the runtime's job queue
delivers them.

What stays on real MinIO (tests/integration/), because moto is not faithful there (seen with moto 5.2.5):

* presign enforcement: moto's in-process S3 accepted a presigned PUT signed with credentials it never issued,
  the same URL replayed for another key, and a body whose ``x-amz-checksum-sha256`` did not match. MinIO
  checks all three, and the per-device IAM policies (infra/device_identities.py) that confine a camera to its
  own prefix exist only there (test_presigned_uploads.py, test_pseudonymous_keys.py, test_attack_*.py);
* notifications: moto refuses MinIO's webhook target (``arn:minio:sqs::...:webhook``: "The ARN is not well
  formed") and never calls a webhook, so the delivery path (MinIO → webhook → job queue → handler), retries
  and decoded keys are tested against MinIO (test_event_pipeline.py, test_handlers.py, test_lifecycle.py);
* write-once uploads: CryoSpy uses no S3 Object Lock; a clip is write-once because its presigned slot carries
  ``If-None-Match: *``. moto does honour that header from the SDK, but what matters is that MinIO enforces it
  on a presigned PUT, which is the presign path above (test_presigned_uploads.py).

Built here only: if the way Services are built changes, :func:`moto_services` is the one place to follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from cryospy.common.keys import generate_device_signing_key, verify_key_to_text
from cryospy.common.objectkeys import parse_clip_key
from cryospy.functions import services as services_module
from cryospy.functions.app import OBJECT_HANDLERS
from cryospy.functions.devices.auth_defence import AuthDefence, AuthDefenceSettings
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.events import ObjectEvent
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.keyvault import KeyVault
from cryospy.functions.services import S3Identity, Services
from tests.conftest import FAST_SCRYPT_N, PASSPHRASE
from tests.support import ClipSealer

BUCKET = "cryospy"
#: moto intercepts requests to AWS's own endpoints; path style, as with MinIO (S3Identity.client).
_ENDPOINT = "https://s3.amazonaws.com"


def moto_services(tmp: Path, **options: Any) -> Services:
    """Services as the runtime builds them (infra/runtime.py), with both S3 identities pointed at moto;
    ``options`` are further Services fields (limits). Call it inside ``mock_aws()``."""
    vault = KeyVault(tmp / "keys.json")
    vault.initialise(PASSPHRASE, scrypt_n=FAST_SCRYPT_N)
    return Services(
        bucket=BUCKET, presigner=S3Identity(_ENDPOINT, "presigner", "presigner-secret"),
        handler=S3Identity(_ENDPOINT, "handler", "handler-secret"),
        devices=DeviceRegistry(tmp / "devices.json"), index=TinyDBIndex(tmp / "index", vault.index_key),
        vault=vault, defence=AuthDefence(tmp / "auth-failures.sqlite", AuthDefenceSettings()),
        admin_token="admin-token-for-tests", **options)


@dataclass
class HandlerWorld:
    """The services, and what a test does to them: enrol cameras, put objects, deliver bucket events."""

    services: Services

    def with_options(self, **options: Any) -> None:
        """The same deployment with other Services fields (Services are frozen, as in the runtime)."""
        self.services = replace(self.services, **options)
        services_module.configure(self.services)

    @property
    def s3(self) -> Any:
        return self.services.handler_client

    def camera(self, device_id: str, settings: dict[str, Any] | None = None) -> ClipSealer:
        """Enrol a device whose signing key is registered, and return a sealer that signs as it."""
        signer = generate_device_signing_key()
        device, _ = self.services.devices.create(device_id, verify_key_to_text(signer.public_key()), settings or {})
        return ClipSealer(device.storage_token, self.services.vault.public_key(), signer)

    def put(self, key: str, data: bytes) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return key

    def upload(self, camera: ClipSealer, payload: bytes | None = None) -> str:
        """Seal the camera's next clip, put it in the bucket and deliver its creation event."""
        key, data, _ = camera.sealed(payload)
        self.created(self.put(key, data))
        return key

    def created(self, key: str) -> None:
        self._deliver("on_clip_created", ObjectEvent("s3:ObjectCreated:Put", BUCKET, key, None, None, None, None))

    def removed(self, key: str) -> None:
        self._deliver("on_clip_removed", ObjectEvent("s3:ObjectRemoved:Delete", BUCKET, key, None, None, None, None))

    def _deliver(self, handler: str, event: ObjectEvent) -> None:
        OBJECT_HANDLERS[handler](event)   # as the runtime's job queue delivers a parsed event

    def objects(self, prefix: str) -> dict[str, int]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def indexed(self, device_id: str, key: str) -> dict[str, Any] | None:
        return self.services.index.get_clip(device_id, parse_clip_key(key).day, key)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[HandlerWorld]:
    with mock_aws():
        services = moto_services(tmp_path)
        services.handler_client.create_bucket(Bucket=BUCKET)
        services_module.configure(services)
        try:
            yield HandlerWorld(services)
        finally:
            services_module.configure(None)
