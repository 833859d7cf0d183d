"""Expected failures of the infrastructure give one clear message naming the cause, never a traceback."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from cryospy.functions.app import OBJECT_HANDLERS, app
from cryospy.infra.bootstrap import provision
from cryospy.infra.errors import MinioStartError, PortInUse, StorageError
from cryospy.infra.event_routes import routes_from_app
from cryospy.infra.minio_server import MinioServer, free_port
from tests.conftest import new_deployment

pytestmark = pytest.mark.integration


def test_wrong_root_credentials_are_named(deployment, minio):
    wrong = replace(deployment, minio_root_password="not-the-password")
    with pytest.raises(StorageError, match="refused the root credentials"):
        provision(wrong, routes_from_app(app, OBJECT_HANDLERS))


def test_unreachable_minio_is_named(deployment):
    gone = replace(deployment, minio_port=free_port())
    with pytest.raises(StorageError, match="cannot reach MinIO"):
        provision(gone, routes_from_app(app, OBJECT_HANDLERS))


def test_enrolling_a_camera_while_minio_is_down_answers_503_and_changes_nothing(deployment, runtime):
    """MinIO unreachable (or a cluster without quorum) is not a bug: the admin API answers 503 with the cause
    and Retry-After, not a 500, and no half-enrolled camera is left behind."""
    from cryospy.functions.services import configure
    from cryospy.infra.device_identities import MinioDeviceIdentities
    from cryospy.infra.gateway import ChaliceWSGI
    from tests.support import LAST_HEADERS, api_call

    gone = replace(deployment, minio_port=free_port())
    configure(replace(runtime.services, identities=MinioDeviceIdentities(gone)))
    try:
        status, body = api_call(ChaliceWSGI(app), "POST", "/v1/admin/devices", {"device_id": "while-down"},
                                {"Authorization": f"Bearer {deployment.admin_token}"})
    finally:
        configure(runtime.services)
    assert status == 503 and "Is MinIO running" in body["error"] and LAST_HEADERS.get("Retry-After") == "5"
    assert not runtime.services.devices.exists("while-down")


def test_port_in_use_is_named(tmp_path: Path, minio_binary: Path):
    dep = new_deployment(tmp_path / "d")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", dep.minio_port))
        squatter.listen()
        with pytest.raises(PortInUse, match=f"port {dep.minio_port} on 127.0.0.1 is already in use"):
            MinioServer(dep, binary=minio_binary).start()


def test_minio_that_cannot_start_reports_its_log(tmp_path: Path, minio_binary: Path):
    dep = new_deployment(tmp_path / "d")
    # A drive path that is a file, not a directory: MinIO exits at once.
    (dep.path("minio")).mkdir(parents=True)
    dep.path("minio", "data").write_text("not a directory")
    with pytest.raises(MinioStartError) as err:
        MinioServer(dep, binary=minio_binary).start(timeout=30)
    assert "MinIO" in str(err.value) and "log" in str(err.value)
