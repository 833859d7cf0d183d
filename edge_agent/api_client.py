"""The agent's HTTP client for the CryoSpy API and the presigned MinIO PUT.

Plain ``urllib`` with TLS verification on by default (``ca_bundle``: the deployment's own CA, which the config
from ``cryospy devices create`` carries, so the camera trusts this server and nothing else), the optional
proxy-auth header on API calls, and errors sorted into "retry later" (network, 5xx, 429) versus "the server
will never accept this" (other 4xx). A server whose certificate the CA did not sign is :class:`ServerNotTrusted`:
still retried (a restored server may come back), and logged with the cause and the fix.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import AgentConfig
from .errors import SigningKeyConflict, UploadError


class Retryable(Exception):
    """A failure that retrying later can fix (server down, network, overload)."""


class ServerNotTrusted(Retryable):
    """The server's TLS certificate does not verify against ``ca_bundle``: nothing was sent past the handshake."""


def ssl_context(config: AgentConfig) -> ssl.SSLContext:
    """Verification on, against ``ca_bundle`` (inline PEM or a file) or the system's roots if there is none."""
    if not config.tls_verify:
        return ssl._create_unverified_context()
    bundle = config.ca_bundle
    if bundle.lstrip().startswith("-----BEGIN"):
        return ssl.create_default_context(cadata=bundle)
    return ssl.create_default_context(cafile=bundle or None)


def _unreachable(url: str, exc: BaseException) -> Retryable:
    """A failure on the way: no connection, a timeout, or an answer cut short (http.client's IncompleteRead
    when the server dies mid-reply: a runtime killed behind a balancer) — all retried, the clip kept."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return ServerNotTrusted(
            f"refusing to talk to {url}: its TLS certificate does not verify against this agent's ca_bundle "
            f"({reason.verify_message}). The config's CA belongs to another server, or the server was set up "
            "anew: take ca_bundle from a fresh `cryospy devices create` config (or the server's tls/ca.crt)")
    return Retryable(f"cannot reach {url}: {exc}")


@dataclass(frozen=True)
class SettingsResponse:
    """A 200 answer to GET /v1/device/settings: the document and the ETag to send back next time."""

    document: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class Slot:
    url: str
    headers: dict[str, str]
    key: str


class ApiClient:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.base = config.server_url.rstrip("/")
        self._ssl = ssl_context(config)
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
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            raise _unreachable(req.full_url.split('?')[0], exc) from None

    def _json(self, method: str, path: str, doc: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, timeout: float | None = None) -> tuple[int, bytes, dict[str, str]]:
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method,
                                     headers={**self._auth, "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.config.server_timeout_seconds,
                                        context=self._ssl) as resp:
                return resp.status, resp.read(), dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code in (408, 429):
                raise Retryable(f"HTTP {exc.code} from {self.base}{path}") from None
            return exc.code, exc.read(), dict(exc.headers.items())
        except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
            raise _unreachable(f"{self.base}{path}", exc) from None

    def get_settings(self, etag: str = "") -> SettingsResponse | None:
        """The device's settings document, or None when it still matches ``etag`` (304)."""
        status, body, headers = self._json("GET", "/v1/device/settings",
                                           headers={"If-None-Match": etag} if etag else None)
        if status == 304:
            return None
        if status == 401:
            raise UploadError("the server rejected this device's credentials (401): check client_id and "
                              "client_secret, and that the device is enabled")
        if status != 200:
            raise UploadError(f"the server refused the settings request (HTTP {status}): {body[:300]!r}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise Retryable(f"the settings answer is not JSON: {body[:100]!r}") from None
        if not isinstance(doc, dict):
            raise Retryable("the settings answer is not a JSON object")
        etag_header = next((v for k, v in headers.items() if k.lower() == "etag"), "")
        return SettingsResponse(doc, etag_header)

    def register_signing_key(self, public_key_text: str) -> dict[str, Any]:
        """Register this device's public signing key (trust on first use); the server's answer on 201 (stored
        now) or 200 (registered before). SigningKeyConflict when the server holds a different key."""
        status, body, _ = self._json("POST", "/v1/device/signing-key", {"signing_key": public_key_text})
        if status == 409:
            raise SigningKeyConflict(f"the server refused this agent's signing key: {_error_text(body)}")
        if status == 401:
            raise UploadError("the server rejected this device's credentials (401): check client_id and "
                              "client_secret, and that the device is enabled")
        if status not in (200, 201):
            raise UploadError(f"the server refused the signing key (HTTP {status}): {body[:300]!r}")
        try:
            answer = json.loads(body)
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def heartbeat(self, doc: dict[str, Any]) -> dict[str, Any]:
        """POST the agent's health; returns the server's answer (it says whether settings changed)."""
        status, body, _ = self._json("POST", "/v1/device/heartbeat", doc)
        if status != 200:
            raise UploadError(f"the server refused the heartbeat (HTTP {status}): {body[:300]!r}")
        try:
            answer = json.loads(body)
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def post_events(self, events: list[dict[str, Any]]) -> None:
        """POST real-time events (motion, camera state); Retryable when the server is out of reach."""
        status, body, _ = self._json("POST", "/v1/device/events", {"events": events})
        if status != 200:
            raise UploadError(f"the server refused the events (HTTP {status}): {body[:300]!r}")

    def request_slot(self, doc: dict[str, Any]) -> Slot:
        req = urllib.request.Request(f"{self.base}/v1/device/slots", data=json.dumps(doc).encode(), method="POST",
                                     headers={**self._auth, "Content-Type": "application/json"})
        status, body = self._open(req)
        if status == 401:
            raise UploadError("the server rejected this device's credentials (401): check client_id and "
                              "client_secret, and that the device is enabled")
        if status == 409:   # no signing key registered yet: the clip is fine, it waits until the key is
            raise Retryable(f"no upload slot yet: {_error_text(body)}")
        if status != 201:
            raise UploadError(f"the server refused the upload slot (HTTP {status}): {body[:300]!r}")
        try:
            slot = json.loads(body)
            return Slot(slot["url"], slot["headers"], slot["key"])
        except (ValueError, KeyError, TypeError):
            raise Retryable(f"the slot answer is not what this agent expects: {body[:200]!r}") from None

    def confirm(self, key: str) -> None:
        """Tell the server the clip is uploaded so it is processed at once; MinIO's own notification still
        follows, so a failed confirmation only costs latency and is merely logged by the caller."""
        status, body, _ = self._json("POST", "/v1/device/uploads/confirm", {"key": key})
        if status != 200:
            raise UploadError(f"the server refused the upload confirmation (HTTP {status}): {body[:200]!r}")

    def call(self, method: str, path: str, doc: dict[str, Any] | None = None,
             timeout: float | None = None) -> tuple[int, dict[str, Any]]:
        """An API call for the newer loops (live view): the status and the JSON object answered ({} if none)."""
        status, body, _ = self._json(method, path, doc, timeout=timeout)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        return status, answer if isinstance(answer, dict) else {}

    def put_bytes(self, url: str, headers: dict[str, str], data: bytes) -> int:
        """PUT ``data`` to a presigned URL; the HTTP status (errors other than retryable ones are returned)."""
        return self._open(urllib.request.Request(url, data=data, method="PUT", headers=headers))[0]

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


def _error_text(body: bytes) -> str:
    """The ``error`` of a JSON error answer, else the start of the body."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"]
    return repr(body[:300])
