"""Admin-side domain code: the token check and device management requests."""

from __future__ import annotations

import hmac
from typing import Any

from chalice.app import Request

from cryospy.common.keys import verify_key_from_text
from cryospy.common.objectkeys import ObjectKeyError, validate_device_id

from . import validate
from .errors import BadRequest, Unauthorized
from .services import Services


def require_admin(services: Services, request: Request) -> None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(token.encode(), services.admin_token.encode()):
        raise Unauthorized("admin token required (Authorization: Bearer <token> from deployment.json)")


def create_device(services: Services, doc: dict[str, Any]) -> dict[str, Any]:
    validate.only_known(doc, {"device_id", "signing_key", "settings"})
    device_id = validate.string(doc, "device_id", 63)
    try:
        validate_device_id(device_id)
    except ObjectKeyError as exc:
        raise BadRequest(str(exc), field="device_id") from None
    signing_key = validate.string(doc, "signing_key", 200)
    try:
        verify_key_from_text(signing_key)
    except Exception:
        raise BadRequest("'signing_key' is not an Ed25519 public key in CryoSpy's text form",
                         field="signing_key") from None
    settings = doc.get("settings") or {}
    if not isinstance(settings, dict):
        raise BadRequest("'settings' must be an object", field="settings")
    device, secret = services.devices.create(device_id, signing_key, settings)
    return {**device.public(), "secret": secret,
            "note": "the secret is shown once; store it in the agent's config now"}
