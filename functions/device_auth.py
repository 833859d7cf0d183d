"""Authenticating a device request, with the defences the original only intended.

Order matters: the proxy-auth header (when configured) and the per-address block are checked before the
secret, so a blocked address learns nothing and costs nothing. Every failure is recorded per device id
(for known devices) and per client address in a persisted sliding window; at the configured thresholds
the device is disabled (its upload identity in MinIO too, so slots it already holds stop working) and the
admin gets one rate-limited e-mail.
"""

from __future__ import annotations

import hmac
import logging

from chalice.app import Request

from .admin import set_enabled
from .devices import Device, parse_basic
from .errors import ApiError, Unauthorized
from .services import Services

log = logging.getLogger("cryospy.auth")


class TooManyFailures(ApiError):
    status = 429


def request_ip(request: Request) -> str:
    """The client's address: ``sourceIp``, which the runtime's front door (or API Gateway) has already resolved
    through the trusted-proxy rule."""
    return str(request.context.get("identity", {}).get("sourceIp") or "")


def authenticate_device(services: Services, request: Request) -> Device:
    ip = request_ip(request)
    if services.proxy_auth is not None:
        name, expected = services.proxy_auth
        if not hmac.compare_digest((request.headers.get(name.lower()) or "").encode(), expected.encode()):
            raise Unauthorized()
    if services.defence is not None and services.defence.is_blocked(ip):
        raise TooManyFailures("too many failed logins from this address; wait and try again")
    device_id: str | None = None
    try:
        device_id, secret = parse_basic(request.headers.get("authorization"))
        return services.devices.authenticate(device_id, secret)
    except Unauthorized:
        _record_failure(services, device_id, ip)
        raise


def _record_failure(services: Services, device_id: str | None, ip: str) -> None:
    if services.defence is None:
        return
    known = bool(device_id) and services.devices.exists(device_id)  # type: ignore[arg-type]
    decision = services.defence.record_failure(device_id if known else None, ip, known_device=known)
    if known and decision.disable_device:
        assert device_id is not None
        log.warning("disabling device %r after %d failed logins (last from %s)", device_id,
                    decision.device_failures, ip)
        set_enabled(services, device_id, False)
    # Disabling a device is a state change the admin must act on, so it is always mailed (once per disable);
    # plain threshold alerts obey the rate limit.
    if known and (decision.notify or decision.disable_device) and services.alerts is not None:
        services.alerts.auth_failures(device_id, decision.device_failures, ip,
                                      disabled=decision.disable_device)
