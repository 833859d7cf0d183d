"""Helpers for the attack tests of issue #12: a runtime per attack, raw HTTP calls, and a client's address
named in ``X-Forwarded-For`` (the runtime trusts 127.0.0.1 as its proxy in :data:`BEHIND_PROXY`)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from cryospy.infra.deployment import Deployment
from cryospy.infra.runtime import Runtime
from cryospy.infra.server_config import ServerConfig
from tests.support import unlocked_runtime

BEHIND_PROXY = ServerConfig(trusted_proxies=("127.0.0.1",))


def forget_failures(deployment: Deployment) -> None:
    for suffix in ("", "-wal", "-shm"):
        deployment.path("runtime", "auth-failures.sqlite" + suffix).unlink(missing_ok=True)


@contextmanager
def serving(deployment: Deployment, config: ServerConfig | None = None) -> Iterator[Runtime]:
    """A runtime for one attack, starting from no recorded failures (earlier tests share the deployment and
    may have failed logins from 127.0.0.1); what the attack records is forgotten afterwards too."""
    forget_failures(deployment)
    try:
        with unlocked_runtime(deployment, config) as rt:
            yield rt
    finally:
        forget_failures(deployment)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def call(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          ) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def basic(device_id: str, secret_hex: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{device_id}:{secret_hex}".encode()).decode()}


def guess(dep: Deployment, device_id: str, **headers: str) -> int:
    """One wrong secret for ``device_id`` (device secrets are 256-bit: a guess never succeeds)."""
    return call("GET", f"{dep.runtime_url}/v1/device/settings", headers={**basic(device_id, "00" * 32),
                                                                          **headers})[0]


def login(dep: Deployment, passphrase: str, **headers: str) -> tuple[int, dict[str, str], str]:
    """POST the login form; the pre-login CSRF cookie is whatever the client says, as for any browser."""
    body = f"csrf=pre&passphrase={passphrase}".encode()
    status, hdrs, raw = call("POST", f"{dep.runtime_url}/login", body, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": "cryospy_prelogin=pre", **headers})
    return status, hdrs, raw.decode("utf-8", "replace")


def xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


