"""The Chalice app through the WSGI gateway: validation, authentication and routing (no MinIO needed:
presigning is offline)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cryospy.common.keys import generate_device_signing_key, verify_key_to_text
from cryospy.common.objectkeys import is_storage_token
from cryospy.functions import services as services_mod
from cryospy.functions.app import app
from cryospy.infra.gateway import ChaliceWSGI
from tests.support import LAST_HEADERS as _last_headers
from tests.support import api_call as call
from tests.support import offline_services

ADMIN = "admin-token-for-tests"


@pytest.fixture
def api(tmp_path: Path):
    services = offline_services(tmp_path, ADMIN)
    services_mod.configure(services)
    yield ChaliceWSGI(app)
    services_mod.configure(None)


def enrol(api, device_id: str = "cam1") -> dict[str, str]:
    key = verify_key_to_text(generate_device_signing_key().public_key())
    status, doc = call(api, "POST", "/v1/admin/devices", {"device_id": device_id, "signing_key": key},
                       {"Authorization": f"Bearer {ADMIN}"})
    assert status == 201, doc
    token = base64.b64encode(f"{device_id}:{doc['secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


SLOT = {"size": 500, "sha256": "ab" * 32, "captured_at": "2026-01-02T03:04:05.678Z", "sequence": 3}


def test_health_needs_no_auth(api):
    assert call(api, "GET", "/v1/health") == (200, {"status": "ok", "service": "cryospy"})


def test_unknown_path_is_404_and_wrong_method_405(api):
    assert call(api, "GET", "/v1/nope")[0] == 404
    assert call(api, "DELETE", "/v1/health")[0] == 405


def test_slot_pins_length_checksum_and_no_overwrite(api):
    auth = enrol(api)
    status, slot = call(api, "POST", "/v1/device/slots", SLOT, auth)
    assert status == 201, slot
    token = api.services.devices.get("cam1").storage_token if hasattr(api, "services") else slot["key"].split("/")[1]
    # The key names the device by its storage token (a random pseudonym), never by its name.
    assert is_storage_token(token) and "cam1" not in slot["key"]
    assert slot["key"] == f"clips/{token}/2026/01/02/20260102T030405.678Z-3.cse"
    signed = parse_qs(urlsplit(slot["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert set(signed) == {"content-length", "content-type", "host", "if-none-match", "x-amz-checksum-sha256"}
    assert slot["headers"]["Content-Length"] == "500" and slot["headers"]["If-None-Match"] == "*"
    assert base64.b64decode(slot["headers"]["x-amz-checksum-sha256"]) == bytes.fromhex("ab" * 32)
    assert int(parse_qs(urlsplit(slot["url"]).query)["X-Amz-Expires"][0]) <= 900


@pytest.mark.parametrize(("change", "field"), [
    ({"size": 1001}, "size"), ({"size": 0}, "size"), ({"size": "500"}, "size"), ({"size": True}, "size"),
    ({"sha256": "zz"}, "sha256"), ({"sha256": None}, "sha256"), ({"captured_at": "yesterday"}, "captured_at"),
    ({"captured_at": "2026-01-02T03:04:05"}, "captured_at"), ({"captured_at": "2999-01-01T00:00:00Z"}, "captured_at"),
    ({"sequence": -1}, "sequence"), ({"sequence": 2**64}, "sequence"), ({"duration_s": float("inf")}, "duration_s"),
    ({"colour": "red"}, "colour"),
])
def test_bad_slot_requests_get_400_naming_the_field(api, change, field):
    auth = enrol(api)
    body = {**SLOT, **change}
    if change.get("sha256", "") is None:
        del body["sha256"]
    raw = json.dumps(body).replace("Infinity", "1e999").encode()
    status, doc = call(api, "POST", "/v1/device/slots", headers=auth, raw=raw)
    assert status == 400, doc
    assert doc["field"] == field


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b"\xff\xfe", b'"text"', b"{}" + b" " * 70000])
def test_unparseable_bodies_get_4xx_not_500(api, raw):
    auth = enrol(api)
    status, doc = call(api, "POST", "/v1/device/slots", headers=auth, raw=raw)
    assert status in (400, 413), doc


@pytest.mark.parametrize("header", [
    None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"cam1").decode(),
    "Basic " + base64.b64encode(b"cam1:" + b"00" * 32).decode(),
    "Basic " + base64.b64encode(b"ghost:" + b"00" * 32).decode(),
])
def test_bad_device_credentials_all_get_the_same_401(api, header):
    enrol(api)
    status, doc = call(api, "POST", "/v1/device/slots", SLOT, {"Authorization": header} if header else {})
    assert (status, doc) == (401, {"error": "invalid credentials"})


def test_admin_routes_need_the_token(api):
    assert call(api, "GET", "/v1/admin/devices")[0] == 401
    assert call(api, "GET", "/v1/admin/devices", headers={"Authorization": "Bearer nope"})[0] == 401
    enrol(api, "a b+c")
    status, doc = call(api, "GET", "/v1/admin/devices", headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200 and [d["device_id"] for d in doc["devices"]] == ["a b+c"]
    assert "secret_hash" not in json.dumps(doc) and "secret_salt" not in json.dumps(doc)


def test_device_creation_validates(api):
    h = {"Authorization": f"Bearer {ADMIN}"}
    status, doc = call(api, "POST", "/v1/admin/devices", {"device_id": "../x", "signing_key": "k"}, h)
    assert (status, doc["field"]) == (400, "device_id")
    status, doc = call(api, "POST", "/v1/admin/devices", {"device_id": "ok", "signing_key": "k"}, h)
    assert (status, doc["field"]) == (400, "signing_key")
    enrol(api, "dup")
    key = verify_key_to_text(generate_device_signing_key().public_key())
    assert call(api, "POST", "/v1/admin/devices", {"device_id": "dup", "signing_key": key}, h)[0] == 409


def test_settings_are_served_with_an_etag_and_304_when_unchanged(api):
    auth = enrol(api, "garden")
    env_headers = dict(auth)
    status, doc = call(api, "GET", "/v1/device/settings", headers=env_headers)
    assert status == 200 and doc["device_id"] == "garden"
    assert doc["settings"]["clip_duration_seconds"] == 60 and doc["settings"]["motion_mog_history"] == 500
    assert doc["deployment_public_key"].startswith("cs1-x25519:")
    etag = _last_headers["ETag"]
    status, _ = call(api, "GET", "/v1/device/settings", headers={**auth, "If-None-Match": etag})
    assert status == 304
    admin_h = {"Authorization": f"Bearer {ADMIN}"}
    status, doc = call(api, "PATCH", "/v1/admin/devices/garden/settings", {"clip_duration_seconds": 20}, admin_h)
    assert status == 200 and doc["settings"]["clip_duration_seconds"] == 20
    status, doc = call(api, "GET", "/v1/device/settings", headers={**auth, "If-None-Match": etag})
    assert status == 200 and doc["settings"]["clip_duration_seconds"] == 20 and _last_headers["ETag"] != etag


@pytest.mark.parametrize(("patch", "field"), [
    ({"clip_duration_seconds": 3}, "settings.clip_duration_seconds"),
    ({"clip_duration_seconds": "60"}, "settings.clip_duration_seconds"),
    ({"downscale_resolution": "853x480"}, "settings.downscale_resolution"),
    ({"output_format": "webm"}, "settings.output_format"),
    ({"colour": 1}, "settings.colour"),
])
def test_settings_edits_are_validated(api, patch, field):
    enrol(api, "garden")
    status, doc = call(api, "PATCH", "/v1/admin/devices/garden/settings", patch, {"Authorization": f"Bearer {ADMIN}"})
    assert (status, doc.get("field")) == (400, field), doc


def test_heartbeat_sets_last_seen_and_reports_settings_drift(api):
    auth = enrol(api, "porch")
    status, doc = call(api, "POST", "/v1/device/heartbeat", {"agent_version": "0.1.0", "spool_depth": 3,
                                                           "source_state": "ok", "settings_etag": '"old"'}, auth)
    assert status == 200 and doc["settings_changed"] is True
    status, shown = call(api, "GET", "/v1/admin/devices/porch", headers={"Authorization": f"Bearer {ADMIN}"})
    assert shown["last_seen"] and shown["heartbeat"]["spool_depth"] == 3
    status, doc = call(api, "POST", "/v1/device/heartbeat", {"spool_depth": -1}, auth)
    assert (status, doc["field"]) == (400, "spool_depth")


def test_disable_enable_rotate_and_delete(api):
    auth = enrol(api, "shed")
    admin_h = {"Authorization": f"Bearer {ADMIN}"}
    assert call(api, "POST", "/v1/admin/devices/shed/disable", headers=admin_h)[1]["enabled"] is False
    assert call(api, "POST", "/v1/device/slots", SLOT, auth)[0] == 401
    assert call(api, "POST", "/v1/admin/devices/shed/enable", headers=admin_h)[1]["enabled"] is True
    assert call(api, "POST", "/v1/device/slots", SLOT, auth)[0] == 201
    status, rotated = call(api, "POST", "/v1/admin/devices/shed/rotate-secret", headers=admin_h)
    assert status == 200 and len(rotated["secret"]) == 64
    assert call(api, "POST", "/v1/device/slots", SLOT, auth)[0] == 401          # the old secret is dead
    new_auth = {"Authorization": "Basic " + base64.b64encode(f"shed:{rotated['secret']}".encode()).decode()}
    assert call(api, "POST", "/v1/device/slots", SLOT, new_auth)[0] == 201
    status, doc = call(api, "DELETE", "/v1/admin/devices/shed", headers=admin_h)
    assert (status, doc["field"]) == (400, "clips")                              # must say what happens to clips
    status, doc = call(api, "DELETE", "/v1/admin/devices/shed?clips=keep", headers=admin_h)
    assert status == 200 and doc["retired"] is True
    assert call(api, "POST", "/v1/device/slots", SLOT, new_auth)[0] == 401
    assert call(api, "POST", "/v1/admin/devices/shed/enable", headers=admin_h)[0] == 409
    assert call(api, "GET", "/v1/admin/devices/nobody", headers=admin_h)[0] == 404


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=x", "limit"), ("from=yesterday", "from"), ("motion=maybe", "motion"),
    ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"), ("cursor=!!", "cursor"), ("sort=asc", "sort"),
])
def test_clip_queries_are_validated(api, query, field):
    status, doc = call(api, "GET", f"/v1/admin/clips?{query}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert (status, doc.get("field")) == (400, field), doc
