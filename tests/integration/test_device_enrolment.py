"""Enrolment without key material on the admin's side: the device is created with no signing key, a real edge
agent makes its own and registers it (trust on first use), and its clips are verified against that key. Also:
slots are refused until then, a second key is refused for good, and the heartbeat reports the settings the
agent applies after the admin changes them. Real runtime, real MinIO, real ffmpeg, a synthetic camera.
"""

from __future__ import annotations

import base64
import json
import stat
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cryospy.cli.admin_client import AdminClient
from cryospy.cli.devices import create_device
from cryospy.common.keys import (
    generate_device_signing_key,
    save_signing_key,
    verify_key_fingerprint,
    verify_key_to_text,
)
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.api_client import ApiClient, Retryable
from cryospy.edge_agent.config import load_config
from cryospy.edge_agent.errors import SigningKeyConflict
from cryospy.edge_agent.signing_identity import load_or_create_signing_key
from cryospy.functions.devices.self_service import settings_document, settings_in_sync
from cryospy.infra.deployment import Deployment
from tests.support import RunningAgent, wait_for

pytestmark = pytest.mark.integration

TINY = {"camera_device": "synthetic:160x96", "clip_seconds": 2, "fps": 10, "settings_sync_seconds": 5,
        "server_timeout_seconds": 5, "upload_retry_minutes": 0.05, "source_retry_max_seconds": 1}


def enrol_keyless(dep: Deployment, device_id: str, tmp_path: Path) -> Path:
    """`cryospy devices create <id> --agent-generates-key`: a config with the secret and no signing key."""
    path = tmp_path / f"{device_id}.json"
    create_device(dep, device_id, path, {**TINY, "temp_dir": str(tmp_path)}, agent_generates_key=True)
    assert "signing_key" not in json.loads(path.read_text())
    return path


def indexed(rt: Any, device_id: str) -> list[dict[str, Any]]:
    return [c for day in rt.services.index.days(device_id) for c in rt.services.index.clips_for_day(device_id, day)]


def _device_post(dep: Deployment, path: str, secret_auth: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"{dep.api_url}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": secret_auth, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_agent_makes_and_registers_its_own_key_and_its_clips_are_indexed(deployment, runtime, tmp_path: Path):
    config_path = enrol_keyless(deployment, "tofu-cam", tmp_path)
    assert runtime.services.devices.get("tofu-cam").public()["awaiting_signing_key"] is True
    running = RunningAgent(config_path)
    try:
        clip = wait_for(lambda: indexed(runtime, "tofu-cam"), timeout=90, what="the first clip indexed")[0]
    finally:
        running.stop()
    assert running.error is None
    assert clip.sequence == 0 and clip.duration_s == pytest.approx(2.0, abs=0.05)

    config = load_config(config_path)
    assert config.signing_key_file == config.spool_dir / "signing-key"
    assert stat.S_IMODE(config.signing_key_file.stat().st_mode) == 0o600
    own_key = load_or_create_signing_key(config.signing_key_file)
    device = runtime.services.devices.get("tofu-cam")
    assert device.signing_key == verify_key_to_text(own_key.public_key())
    assert device.signing_key_fingerprint == running.agent.identity.fingerprint

    # A second key, from anyone holding the device's secret, is refused and changes nothing.
    other = verify_key_to_text(generate_device_signing_key().public_key())
    with pytest.raises(SigningKeyConflict, match="delete the device and create it again"):
        ApiClient(config).register_signing_key(other)
    assert runtime.services.devices.get("tofu-cam").signing_key == device.signing_key

    # The same device with its key file replaced (a swapped or reset camera) stops with that error.
    config.signing_key_file.unlink()
    save_signing_key(config.signing_key_file, generate_device_signing_key())
    swapped = Agent.build(config)
    with pytest.raises(SigningKeyConflict, match="already has a signing key"):
        swapped.run(install_signals=False)
    assert runtime.services.devices.get("tofu-cam").signing_key == device.signing_key
    stats = swapped.uploader.stats
    assert (stats.uploaded, stats.failures) == (0, 0), "nothing signed by the new key was even offered"


def test_slots_are_refused_before_the_key_is_registered(deployment, runtime, tmp_path: Path, capsys):
    created = AdminClient(deployment.runtime_url, deployment.admin_token).call(
        "POST", "/v1/admin/devices", {"device_id": "keyless"})
    assert created["signing_key"] is None and created["signing_key_fingerprint"] is None
    auth = "Basic " + base64.b64encode(f"keyless:{created['secret']}".encode()).decode()
    slot_request = {"size": 100, "sha256": "ab" * 32, "captured_at": "2026-01-02T03:04:05.000Z", "sequence": 0}
    status, doc = _device_post(deployment, "/v1/device/slots", auth, slot_request)
    assert status == 409 and "register the signing key first" in doc["error"]

    config_path = tmp_path / "keyless.json"
    config_path.write_text(json.dumps({
        "client_id": "keyless", "client_secret": created["secret"], "server_url": deployment.api_url,
        "deployment_public_key": runtime.services.vault.public_key().to_text()}))
    client = ApiClient(load_config(config_path))
    with pytest.raises(Retryable, match="register the signing key first"):   # the agent waits, keeps the clip
        client.request_slot(slot_request)

    assert "keyless" in _devices_list(deployment, capsys) and "waiting for the agent's key" in _devices_list(
        deployment, capsys)
    key = generate_device_signing_key()
    answer = client.register_signing_key(verify_key_to_text(key.public_key()))
    assert answer["registered"] == "now"
    token = runtime.services.devices.get("keyless").storage_token
    assert client.request_slot(slot_request).key.startswith(f"clips/{token}/")
    # `cryospy devices list` now shows the fingerprint the admin compares with the one the agent logs.
    line = next(row for row in _devices_list(deployment, capsys).splitlines() if row.startswith("keyless "))
    assert line.endswith("key " + verify_key_fingerprint(key.public_key()))


def _devices_list(deployment, capsys) -> str:  # type: ignore[no-untyped-def]
    from cryospy.cli.main import main

    capsys.readouterr()
    assert main(["devices", "list", "--data-dir", str(deployment.data_dir)]) == 0
    return capsys.readouterr().out


def test_the_heartbeat_reports_a_setting_the_admin_changed(deployment, runtime, tmp_path: Path):
    config_path = enrol_keyless(deployment, "reporter", tmp_path)
    running = RunningAgent(config_path)
    try:
        def beat() -> dict[str, Any]:
            return runtime.services.devices.get("reporter").heartbeat or {}

        first = wait_for(lambda: beat().get("settings") and beat(), timeout=60, what="a heartbeat with settings")
        assert first["settings"]["crf"] == 26 and first["pinned"]["clip_seconds"] == 2
        wait_for(lambda: settings_in_sync(runtime.services, runtime.services.devices.get("reporter")), timeout=60,
                 what="the camera to report the current settings")

        AdminClient(deployment.runtime_url, deployment.admin_token).call(
            "PATCH", f"/v1/admin/devices/{quote('reporter')}/settings", {"crf": 31, "grayscale": True})
        device = runtime.services.devices.get("reporter")
        new_etag = settings_document(runtime.services, device)[1]
        assert new_etag != first["settings_etag"]
        reported = wait_for(lambda: beat().get("settings_etag") == new_etag and beat(), timeout=60,
                            what="a heartbeat carrying the new ETag")
        assert reported["settings"]["crf"] == 31 and reported["settings"]["grayscale"] is True
        assert settings_in_sync(runtime.services, runtime.services.devices.get("reporter"))
    finally:
        running.stop()
    assert running.error is None


def test_devices_create_adds_cameras_to_one_agent_config(deployment, runtime, tmp_path: Path, capsys):
    """`cryospy devices create --add-to FILE` builds a multi-camera agent config, one camera per call; a second
    camera with the same id is refused with a clear message."""
    from cryospy.cli.main import main
    from cryospy.edge_agent.config import load_configs

    nvr = tmp_path / "nvr.json"
    base = ["devices", "create", "--data-dir", str(deployment.data_dir), "--add-to", str(nvr)]
    assert main([*base[:2], "nvr-a", *base[2:], "--camera", "rtsp://u:pw@10.0.0.5/1",
                 "--detect", "rtsp://u:pw@10.0.0.5/2"]) == 0
    assert main([*base[:2], "nvr-b", *base[2:], "--camera", "rtsp://u:pw@10.0.0.6/1"]) == 0
    assert f"cryospy agent --config {nvr}" in capsys.readouterr().out
    a, b = load_configs(nvr)
    assert (a.client_id, a.detect_device, b.client_id, b.detect_device) == \
        ("nvr-a", "rtsp://u:pw@10.0.0.5/2", "nvr-b", "")
    assert a.spool_dir != b.spool_dir and stat.S_IMODE(nvr.stat().st_mode) == 0o600
    assert main([*base[:2], "nvr-a", *base[2:], "--camera", "rtsp://x/1"]) == 2
    assert "already has a camera 'nvr-a'" in capsys.readouterr().err
