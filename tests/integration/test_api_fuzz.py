"""Property-based API testing with schemathesis against the OpenAPI file: no generated input gives a 5xx.

Runs against the real runtime and MinIO, with valid device and admin credentials so that generated inputs
reach the validators rather than stopping at authentication.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cryospy.infra.minio_server import MinioServer
from cryospy.infra.runtime import Runtime, RuntimeOptions
from tests.conftest import PASSPHRASE, new_deployment
from tests.support import FakeCamera

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "functions" / "openapi.json"
schema = schemathesis.openapi.from_path(str(SPEC))


@pytest.fixture(scope="module")
def api(minio_binary, tmp_path_factory):
    # A deployment of its own: the fuzzer's thousands of bad credentials get 127.0.0.1 rate-limited, which
    # must not leak into other tests.
    deployment = new_deployment(tmp_path_factory.mktemp("fuzz-deployment") / "d")
    with MinioServer(deployment, binary=minio_binary):
        rt = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600))
        rt.unlock(PASSPHRASE)
        rt.start()
        camera = FakeCamera(deployment, "fuzz-cam", tmp_path_factory.mktemp("fuzz"))
        yield deployment, camera.client._auth["Authorization"]
        rt.stop()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case, api):
    deployment, device_auth = api
    auth = f"Bearer {deployment.admin_token}" if case.path.startswith("/v1/admin") else device_auth
    response = case.call(base_url=deployment.runtime_url, headers={"Authorization": auth}, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: " \
                                       f"{response.text[:500]}"
