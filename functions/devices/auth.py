"""Authenticating a device request, with the defences the original only intended.

The proxy-auth header (when configured) is checked first. Then the secret: a right one always gets in, even
from an address that is being throttled, so an attacker's failures can never lock a camera out. A failure
from a throttled address is refused (429) without being recorded; any other failure is recorded per device
id (for known devices) and per client address in a persisted sliding window, and at the threshold the admin
gets one rate-limited e-mail naming the source. Failures never disable a device: the secrets are 256-bit,
so guessing cannot succeed, and disabling would hand anyone who knows a camera's name an off switch. Only
an admin disables a device.
"""

from __future__ import annotations

import hmac
import logging

from chalice.app import Request

from cryospy.functions.channels import feed
from cryospy.functions.devices.registry import Device, parse_basic
from cryospy.functions.errors import ApiError, Unauthorized
from cryospy.functions.services import Services

log = logging.getLogger(__name__)


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
    device_id: str | None = None
    try:
        device_id, secret = parse_basic(request.headers.get("authorization"))
        device = services.devices.authenticate(device_id, secret)
    except Unauthorized:
        if services.defence.is_blocked(ip):
            raise TooManyFailures("too many failed logins from this address; wait and try again") from None
        _record_failure(services, device_id, ip)
        raise
    feed.contact(services, device.device_id)    # the agent is in touch: ends a silence (channels/presence.py)
    return device


def _record_failure(services: Services, device_id: str | None, ip: str) -> None:
    known = bool(device_id) and services.devices.exists(device_id)  # type: ignore[arg-type]
    decision = services.defence.record_failure(device_id if known else None, ip, known_device=known)
    if known and decision.notify:
        log.warning("%d failed logins as device %r in the window, the last from %s", decision.device_failures,
                    device_id, ip)
        services.alerts.auth_failures(device_id, decision.device_failures, ip)
