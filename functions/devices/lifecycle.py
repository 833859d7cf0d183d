"""Admin-side domain code: the token check and device lifecycle requests.

A device can be created with its public signing key (the CLI makes the key pair on the admin's machine and
writes the private half into the agent config) or without one (the dashboard: no key material may reach a
browser). Without one, the agent makes its own key at first start and registers the public half
(``POST /v1/device/signing-key``, trust on first use; see :mod:`.devices`).
"""

from __future__ import annotations

import hmac
from typing import Any

from chalice.app import Request

from cryospy.common.keys import verify_key_from_text, verify_key_to_text
from cryospy.common.objectkeys import ObjectKeyError, validate_device_id
from cryospy.common.settings import DeviceSettings, SettingsError
from cryospy.functions.api import validate
from cryospy.functions.channels import feed
from cryospy.functions.devices.registry import Device
from cryospy.functions.errors import BadRequest, Conflict, Unauthorized
from cryospy.functions.retention.deletion import delete_device_clips
from cryospy.functions.services import Services


def require_admin(services: Services, request: Request) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(token.encode(), services.admin_token.encode()):
        raise Unauthorized("admin token required (Authorization: Bearer <token> from deployment.json)")


def parse_settings(doc: Any, base: DeviceSettings | None = None) -> DeviceSettings:
    if not isinstance(doc, dict):
        raise BadRequest("'settings' must be an object", field="settings")
    try:
        return DeviceSettings.from_dict(doc, base=base)
    except SettingsError as exc:
        raise BadRequest(exc.message, field=f"settings.{exc.field}") from None


def parse_verify_key(doc: dict[str, Any], field: str = "signing_key") -> str:
    """A device's public key from a request, in canonical text form (so equal keys compare equal as text)."""
    text = validate.string(doc, field, 200)
    try:
        return verify_key_to_text(verify_key_from_text(text))
    except Exception:   # the key parser raises several types; all mean "not a public key"
        raise BadRequest(f"'{field}' is not an Ed25519 public key in CryoSpy's text form (cs1-ed25519-pub:…)",
                         field=field) from None


def create_device(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    """Enrol a device; ``signing_key`` is optional (without it the agent registers its own at first start).
    Returns the device's public view plus its secret, which is never shown again."""
    validate.only_known(doc, {"device_id", "signing_key", "settings"})
    device_id = validate.string(doc, "device_id", 63)
    try:
        validate_device_id(device_id)
    except ObjectKeyError as exc:
        raise BadRequest(str(exc), field="device_id") from None
    # Absent, null or "" (an empty form field) all mean "the agent registers its own key".
    signing_key = parse_verify_key(doc) if doc.get("signing_key") not in (None, "") else None
    settings = parse_settings(doc.get("settings") or {})
    if services.devices.exists(device_id):
        raise Conflict(f"device {device_id!r} already exists (possibly retired); pick another id")
    token = services.devices.new_token()
    identity = services.identities.create(token)
    device, secret = services.devices.create(device_id, signing_key, settings.to_dict(), identity, token)
    feed.camera_added(services, device_id)      # MQTT announces it to Home Assistant
    services.audit.record("device.create", device=device_id)
    note = "the secret is shown once; store it in the agent's config now"
    if signing_key is None:
        note += ("; the agent makes its own signing key at first start and registers it: check that the "
                 "fingerprint it logs matches the one shown for this device")
    return {**device.public(), "secret": secret, "note": note}


def update_settings(services: Services, device_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    device = services.devices.get(device_id)
    current = DeviceSettings.from_dict(device.settings)
    updated = parse_settings(doc, current)
    answer = services.devices.update_settings(device_id, updated.to_dict()).public()
    services.audit.record("device.settings", device=device_id, changed=", ".join(sorted(doc)))
    return answer


def set_enabled(services: Services, device_id: str, enabled: bool) -> dict[str, Any]:
    device = services.devices.set_enabled(device_id, enabled)
    if enabled:
        services.defence.clear_device(device_id)   # a fresh start; the failures still count against their IPs
    if device.upload_identity:
        services.identities.set_enabled(device.upload_identity[0], enabled)
    services.forget_upload_client(device_id)
    services.audit.record("device.enable" if enabled else "device.disable", device=device_id)
    return device.public()


def rotate_secret(services: Services, device_id: str) -> dict[str, Any]:
    device, secret = services.devices.rotate_secret(device_id)
    services.defence.clear_device(device_id)
    services.audit.record("device.rotate", device=device_id)
    return {**device.public(), "secret": secret,
            "note": "the old secret stopped working now; put the new one in the agent's config"}


def delete_device(services: Services, device_id: str, clips: str | None) -> dict[str, Any]:
    """Remove a device; the caller must say whether its clips go too (``delete``) or stay (``keep``)."""
    if clips not in ("delete", "keep"):
        raise BadRequest("say what happens to the device's clips: ?clips=delete or ?clips=keep", field="clips")
    device = services.devices.get(device_id)
    if device.upload_identity:
        services.identities.remove(device.upload_identity[0])
    services.forget_upload_client(device_id)
    feed.camera_removed(services, device_id)    # MQTT clears the camera's Home Assistant entities
    services.audit.record("device.delete", device=device_id, clips=clips)
    if clips == "keep":
        services.devices.retire(device_id)
        return {"device_id": device_id, "clips": "kept", "retired": True}
    services.devices.retire(device_id)   # first: the removal events of its clips are then known to be ours
    removed = delete_device_clips(services, device_id)
    services.devices.remove(device_id)
    return {"device_id": device_id, "clips": "deleted", "deleted_objects": removed}


def device_view(device: Device) -> dict[str, Any]:
    return device.public()
