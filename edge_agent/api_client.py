"""The agent's HTTP client for the CryoSpy API and the presigned MinIO PUT.

Plain ``urllib`` with TLS verification on by default (a custom CA bundle for self-signed home setups), the
optional proxy-auth header on API calls, and errors sorted into "retry later" (network, 5xx, 429) versus
"the server will never accept this" (other 4xx).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import AgentConfig
from .errors import UploadError


class Retryable(Exception):
    """A failure that retrying later can fix (server down, network, overload)."""


@dataclass(frozen=True)
class Slot:
    url: str
    headers: dict[str, str]
    key: str


class ApiClient:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.base = config.server_url.rstrip("/")
        if config.tls_verify:
            self._ssl = ssl.create_default_context(cafile=config.ca_bundle or None)
        else:
            self._ssl = ssl._create_unverified_context()
        token = base64.b64encode(f"{config.client_id}:{config.client_secret}".encode()).decode()
        self._auth = {"Authorization": f"Basic {token}"}
        if config.proxy_auth_header and config.proxy_auth_value:
            self._auth[config.proxy_auth_header] = config.proxy_auth_value

    def _open(self, req: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(req, timeout=self.config.server_timeout_seconds, context=self._ssl) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code >= 500 or exc.code in (408, 429):
                raise Retryable(f"HTTP {exc.code} from {req.full_url.split('?')[0]}") from None
            return exc.code, body
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise Retryable(f"cannot reach {req.full_url.split('?')[0]}: {exc}") from None

    def request_slot(self, doc: dict[str, Any]) -> Slot:
        req = urllib.request.Request(f"{self.base}/v1/device/slots", data=json.dumps(doc).encode(), method="POST",
                                     headers={**self._auth, "Content-Type": "application/json"})
        status, body = self._open(req)
        if status == 401:
            raise UploadError("the server rejected this device's credentials (401): check client_id and "
                              "client_secret, and that the device is enabled")
        if status != 201:
            raise UploadError(f"the server refused the upload slot (HTTP {status}): {body[:300]!r}")
        slot = json.loads(body)
        return Slot(slot["url"], slot["headers"], slot["key"])

    def put(self, slot: Slot, path: Path) -> int:
        """PUT the file to the presigned URL; returns the HTTP status (200, or 412 when it already exists)."""
        with open(path, "rb") as fh:
            req = urllib.request.Request(slot.url, data=fh, method="PUT", headers=slot.headers)
            status, body = self._open(req)
        if status in (200, 412):
            return status
        if status == 403 and b"Expired" in body:
            raise Retryable("the upload slot expired before the upload finished")
        raise UploadError(f"MinIO refused the upload (HTTP {status}): {body[:300]!r}")
