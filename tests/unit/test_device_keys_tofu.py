"""Devices that register their own signing key (trust on first use), and heartbeats that report the settings a
camera applies. The registry on its TinyDB file, the admin and device domain code, and the routes through the
WSGI gateway (no MinIO needed: presigning is offline)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryospy.common.keys import (
    generate_device_signing_key,
    signing_key_to_text,
    verify_key_fingerprint,
    verify_key_to_text,
)
from cryospy.common.objectkeys import clip_key
from cryospy.functions import services as services_mod
from cryospy.functions.app import app
from cryospy.functions.clips.ingest import ingest_clip
from cryospy.functions.devices import lifecycle, self_service
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.errors import BadRequest, Conflict, PermanentEventError
from cryospy.functions.events import ObjectEvent
from cryospy.infra.gateway import ChaliceWSGI
from tests.support import api_call as call
from tests.support import offline_services

ADMIN = "admin-token-for-tests"
SLOT = {"size": 500, "sha256": "ab" * 32, "captured_at": "2026-01-02T03:04:05.678Z", "sequence": 0}


def _public_key() -> str:
    return verify_key_to_text(generate_device_signing_key().public_key())


@pytest.fixture
def services(tmp_path: Path):
    svc = offline_services(tmp_path, ADMIN)
    services_mod.configure(svc)
    yield svc
    services_mod.configure(None)


@pytest.fixture
def api(services):
    return ChaliceWSGI(app)


def _device_auth(device_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{device_id}:{secret}".encode()).decode()}


def create_keyless(api, device_id: str = "cam1") -> tuple[dict, dict[str, str]]:
    status, doc = call(api, "POST", "/v1/admin/devices", {"device_id": device_id},
                       {"Authorization": f"Bearer {ADMIN}"})
    assert status == 201, doc
    return doc, _device_auth(device_id, doc["secret"])


# -- the registry ----------------------------------------------------------------------------------------------

def test_a_device_created_without_a_key_awaits_it_and_the_first_key_sticks(tmp_path: Path):
    registry = DeviceRegistry(tmp_path / "devices.json")
    device, _ = registry.create("porch", None, {})
    view = device.public()
    assert view["signing_key"] is None and view["signing_key_fingerprint"] is None
    assert view["awaiting_signing_key"] is True

    key = _public_key()
    stored, now = registry.register_signing_key("porch", key)
    assert now is True and stored.signing_key == key
    assert re.fullmatch(r"[0-9a-f]{4}(-[0-9a-f]{4}){7}", stored.public()["signing_key_fingerprint"])
    assert stored.public()["awaiting_signing_key"] is False
    assert registry.register_signing_key("porch", key) == (registry.get("porch"), False)   # an agent restart

    with pytest.raises(Conflict, match="delete the device and create it again"):
        registry.register_signing_key("porch", _public_key())
    reopened = DeviceRegistry(tmp_path / "devices.json")     # written through, not only cached
    assert reopened.get("porch").signing_key == key


def test_a_retired_device_cannot_register_a_key(tmp_path: Path):
    registry = DeviceRegistry(tmp_path / "devices.json")
    registry.create("gone", None, {})
    registry.retire("gone")
    with pytest.raises(Conflict, match="removed"):
        registry.register_signing_key("gone", _public_key())
    assert registry.get("gone").signing_key is None


# -- lifecycle.create_device (what the dashboard calls directly) ---------------------------------------------------

def test_create_device_without_a_key_shows_the_secret_once_and_no_key_material(services):
    created = lifecycle.create_device(services, {"device_id": "garden", "settings": {"crf": 30}})
    assert len(created["secret"]) == 64 and "fingerprint" in created["note"]
    assert created["signing_key"] is None and created["awaiting_signing_key"] is True
    assert created["settings"]["crf"] == 30
    assert "secret" not in services.devices.get("garden").public()
    also_blank = lifecycle.create_device(services, {"device_id": "shed", "signing_key": ""})   # an empty form field
    assert also_blank["signing_key"] is None


def test_create_device_with_a_key_still_works_and_stores_it_canonically(services):
    key = generate_device_signing_key().public_key()
    created = lifecycle.create_device(services, {"device_id": "door", "signing_key": "  " + verify_key_to_text(key)})
    assert created["signing_key"] == verify_key_to_text(key)
    assert created["signing_key_fingerprint"] == verify_key_fingerprint(key)
    assert created["awaiting_signing_key"] is False


@pytest.mark.parametrize("bad", ["k", 42, signing_key_to_text(generate_device_signing_key())])
def test_create_device_refuses_a_key_that_is_not_a_public_key(services, bad):
    with pytest.raises(BadRequest) as info:
        lifecycle.create_device(services, {"device_id": "odd", "signing_key": bad})
    assert info.value.field == "signing_key"
    assert not services.devices.exists("odd")


# -- the device route --------------------------------------------------------------------------------------------

def test_slots_are_refused_until_the_key_is_registered(api):
    _, auth = create_keyless(api)
    status, doc = call(api, "POST", "/v1/device/slots", SLOT, auth)
    assert status == 409 and "register the signing key first" in doc["error"]
    key = generate_device_signing_key().public_key()
    status, doc = call(api, "POST", "/v1/device/signing-key", {"signing_key": verify_key_to_text(key)}, auth)
    assert (status, doc["registered"]) == (201, "now")
    assert doc["signing_key_fingerprint"] == verify_key_fingerprint(key)
    status, slot = call(api, "POST", "/v1/device/slots", SLOT, auth)
    token = call(api, "GET", "/v1/device/settings", None, auth)[1]["storage_token"]
    assert status == 201 and slot["key"].startswith(f"clips/{token}/")


def test_registration_is_idempotent_and_a_different_key_is_a_conflict(api, services):
    _, auth = create_keyless(api)
    key = _public_key()
    assert call(api, "POST", "/v1/device/signing-key", {"signing_key": key}, auth)[0] == 201
    status, doc = call(api, "POST", "/v1/device/signing-key", {"signing_key": key}, auth)
    assert (status, doc["registered"]) == (200, "before")
    status, doc = call(api, "POST", "/v1/device/signing-key", {"signing_key": _public_key()}, auth)
    assert status == 409 and "delete the device and create it again" in doc["error"]
    assert services.devices.get("cam1").signing_key == key


def test_a_device_enrolled_with_a_key_gets_200_for_it_and_409_for_another(api):
    key = _public_key()
    status, doc = call(api, "POST", "/v1/admin/devices", {"device_id": "cli-cam", "signing_key": key},
                       {"Authorization": f"Bearer {ADMIN}"})
    assert status == 201 and doc["signing_key_fingerprint"]
    auth = _device_auth("cli-cam", doc["secret"])
    assert call(api, "POST", "/v1/device/signing-key", {"signing_key": key}, auth)[0] == 200
    assert call(api, "POST", "/v1/device/signing-key", {"signing_key": _public_key()}, auth)[0] == 409


@pytest.mark.parametrize(("body", "field"), [
    ({}, "signing_key"),
    ({"signing_key": 7}, "signing_key"),
    ({"signing_key": "cs1-ed25519-pub:short"}, "signing_key"),
    ({"signing_key": signing_key_to_text(generate_device_signing_key())}, "signing_key"),   # the private half!
    ({"signing_key": "x" * 500}, "signing_key"),
    ({"signing_key": _public_key(), "extra": 1}, "extra"),
])
def test_registration_input_is_validated(api, services, body, field):
    _, auth = create_keyless(api)
    status, doc = call(api, "POST", "/v1/device/signing-key", body, auth)
    assert (status, doc.get("field")) == (400, field)
    assert services.devices.get("cam1").signing_key is None


def test_registration_needs_the_device_secret(api, services):
    create_keyless(api)
    bad = _device_auth("cam1", "00" * 32)
    assert call(api, "POST", "/v1/device/signing-key", {"signing_key": _public_key()}, bad)[0] == 401
    assert services.devices.get("cam1").signing_key is None


def test_a_clip_from_a_device_without_a_key_is_dead_lettered_with_the_reason(services):
    device, _ = services.devices.create("keyless", None, {})
    key = clip_key(device.storage_token, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 0).key
    with pytest.raises(PermanentEventError, match="has not registered its signing key"):
        ingest_clip(services, ObjectEvent("s3:ObjectCreated:Put", "cryospy", key, 10, "e", None, None))


# -- heartbeats report the applied settings ---------------------------------------------------------------------

def _beat(services, device_id: str, **fields):
    return self_service.record_heartbeat(services, services.devices.get(device_id), fields)


def test_the_heartbeat_stores_the_applied_settings_and_the_page_can_tell_if_they_are_current(services):
    lifecycle.create_device(services, {"device_id": "cam"})
    device = services.devices.get("cam")
    assert self_service.settings_in_sync(services, device) is False          # no heartbeat yet
    _, etag = self_service.settings_document(services, device)
    applied = self_service.device_settings(device).to_dict()
    answer = _beat(services, "cam", settings_etag=etag, settings=applied, pinned={"clip_seconds": 2, "fps": 10})
    assert answer["settings_changed"] is False
    device = services.devices.get("cam")
    assert device.heartbeat["settings"] == applied and device.heartbeat["pinned"] == {"clip_seconds": 2.0,
                                                                                      "fps": 10.0}
    assert self_service.settings_in_sync(services, device) is True

    lifecycle.update_settings(services, "cam", {"crf": 31})
    device = services.devices.get("cam")
    assert self_service.settings_in_sync(services, device) is False
    report = self_service.settings_report(services, device)
    crf = next(row for row in report["settings"] if row["name"] == "crf")
    assert (crf["server"], crf["reported"], crf["matches"]) == (31, 26, False)
    assert report["in_sync"] is False and report["reported_etag"] == etag != report["server_etag"]
    assert report["pinned"] == {"clip_seconds": 2.0, "fps": 10.0}

    new_etag = self_service.settings_document(services, device)[1]
    _beat(services, "cam", settings_etag=new_etag, settings={**applied, "crf": 31})
    device = services.devices.get("cam")
    assert device.heartbeat["settings"]["crf"] == 31 and self_service.settings_in_sync(services, device)
    assert all(row["matches"] for row in self_service.settings_report(services, device)["settings"])


def test_an_older_agent_without_settings_in_its_heartbeat_is_still_accepted(services):
    lifecycle.create_device(services, {"device_id": "old"})
    _beat(services, "old", agent_version="0.0.9", spool_depth=1)
    beat = services.devices.get("old").heartbeat
    assert beat["settings"] is None and beat["pinned"] == {}


def test_only_the_settings_reported_are_stored(services):
    lifecycle.create_device(services, {"device_id": "partial"})
    _beat(services, "partial", settings={"crf": 20, "grayscale": True})
    assert services.devices.get("partial").heartbeat["settings"] == {"grayscale": True, "crf": 20}


@pytest.mark.parametrize(("fields", "field"), [
    ({"settings": "crf=20"}, "settings"),
    ({"settings": {"crf": 99}}, "settings.crf"),
    ({"settings": {"crf": "20"}}, "settings.crf"),
    ({"settings": {"hologram_mode": True}}, "settings.hologram_mode"),
    ({"settings": {"motion_zones": [[[0, 0], [1, 0]]] * 2}}, "settings.motion_zones"),
    ({"pinned": []}, "pinned"),
    ({"pinned": {"turbo": 1}}, "pinned.turbo"),
    ({"pinned": {"fps": 500}}, "pinned.fps"),
    ({"pinned": {"crf": 2.5}}, "pinned.crf"),
    ({"settings_etag": "x" * 101}, "settings_etag"),
])
def test_heartbeat_settings_are_validated_strictly(services, fields, field):
    lifecycle.create_device(services, {"device_id": "strict"})
    with pytest.raises(BadRequest) as info:
        _beat(services, "strict", **fields)
    assert info.value.field == field
    assert services.devices.get("strict").heartbeat is None


def test_heartbeat_route_rejects_bad_reported_settings(api):
    _, auth = create_keyless(api)
    status, doc = call(api, "POST", "/v1/device/heartbeat", {"settings": {"clip_duration_seconds": 1}}, auth)
    assert (status, doc["field"]) == (400, "settings.clip_duration_seconds")
    status, doc = call(api, "POST", "/v1/device/heartbeat", {"settings": {"clip_duration_seconds": 30}}, auth)
    assert status == 200
