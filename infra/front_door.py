"""What the runtime decides about a request before any route sees it: how large its body may be, which
name it was sent to, and who sent it.

* **Body caps per route family, before the body is read.** waitress buffers a whole body before it calls the
  application (and spools anything past ``inbuf_overflow`` to a temp file), so a cap checked in a route comes
  too late. :class:`CappedParser` checks ``Content-Length`` as soon as the headers are parsed, and counts
  chunked bodies as they arrive, against :data:`BODY_LIMITS`; a request over its cap gets 413 and the
  connection is closed without reading the rest. ``inbuf_overflow`` is above the largest cap, so a body
  never reaches the disk.
* **The Host header.** A web page on the LAN can re-point its own name at the runtime (DNS rebinding) and then
  talk to it from the victim's browser with ``Host: attacker.example``. Requests are answered only for the
  names the deployment is configured for (its host, the public API URL's host, ``localhost``, any IP
  literal, and ``allowed_hosts`` in ``server.json``); anything else gets 421 with the fix in the message.
  MinIO's webhook is exempt: it authenticates with a bearer token no browser has, and inside a container
  network it calls the runtime by its service name.
* **The client's address**, by the one rule in :mod:`cryospy.functions.api.client_ip` (``X-Forwarded-For`` only
  from a trusted proxy, read from the right). ``REMOTE_ADDR`` becomes that address for everything behind the
  front door: the device API's throttle, the dashboard's login limiter and the export log see the same
  client. The TCP peer stays in ``cryospy.peer_addr``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import RequestEntityTooLarge

from cryospy.functions.api.client_ip import client_ip
from cryospy.functions.api.http import MAX_JSON_BODY
from cryospy.web.server import MAX_FORM_BODY

from .gateway import status_line
from .webhook import MAX_BODY as MAX_WEBHOOK_BODY

WEBHOOK_PATH = "/_minio/events"
# Route family (path prefix, first match wins) → the largest body it accepts. A MinIO notification is a few
# KiB; device and admin requests are small JSON documents; dashboard forms are a few fields.
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    (WEBHOOK_PATH, MAX_WEBHOOK_BODY),
    ("/v1/", MAX_JSON_BODY),
    ("/", MAX_FORM_BODY),
)
LARGEST_BODY = max(limit for _, limit in BODY_LIMITS)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def body_limit(path: str) -> int:
    return next(limit for prefix, limit in BODY_LIMITS if path.startswith(prefix))


class CappedParser(HTTPRequestParser):
    """waitress's request parser, refusing a body over its route family's cap before reading it."""

    def received(self, data: bytes) -> int:
        consumed = int(super().received(data))
        if self.headers_finished and self.error is None:
            limit = body_limit(getattr(self, "path", "") or "/")
            if self.content_length > limit or self.body_bytes_received > limit:
                self.error = RequestEntityTooLarge(f"{self.path} accepts bodies of at most {limit} bytes")
                self.completed = True
        return consumed


class CappedChannel(HTTPChannel):
    parser_class = CappedParser


def server_options() -> dict[str, Any]:
    """waitress adjustments that go with :func:`install`: a backstop cap, no spooling, proxies handled here."""
    return {"max_request_body_size": LARGEST_BODY + 1, "inbuf_overflow": LARGEST_BODY + 1,
            # waitress would delete X-Forwarded-For before the app sees it; the front door applies the
            # trusted_proxies rule itself (one rule for the device API and the dashboard).
            "clear_untrusted_proxy_headers": False}


def install(server: Any) -> None:
    """Make every listening socket of a waitress server parse requests with :class:`CappedParser`."""
    for listener in list(server._map.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = CappedChannel


def host_names(host: str, public_api_url: str, configured: Iterable[str]) -> frozenset[str]:
    """The names requests may be addressed to (IP literals are always accepted, see :func:`host_allowed`)."""
    names = {"localhost", host, urlsplit(public_api_url).hostname or "", *configured}
    return frozenset(name.lower().rstrip(".") for name in names if name)


def host_allowed(header: str | None, names: frozenset[str]) -> bool:
    """True for a missing Host (not a browser), an IP literal (no name to rebind) or one of ``names``."""
    if not header:
        return True
    value = header.strip().lower()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    value = value.rstrip(".")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return value in names
    return True


class FrontDoor:
    """WSGI middleware in front of the whole runtime: Host check, then the client's address."""

    def __init__(self, app: WsgiApp, names: frozenset[str], trusted_proxies: tuple[str, ...]):
        self.app, self.names, self.trusted_proxies = app, names, trusted_proxies

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO") or "/"
        host = environ.get("HTTP_HOST")
        if path != WEBHOOK_PATH and not host_allowed(host, self.names):
            data = json.dumps({"error": f"this CryoSpy runtime does not answer to the name {host!r}; if that is "
                               "how you reach it, add the name to allowed_hosts in <data-dir>/server.json "
                               "and restart"}).encode()
            start_response(status_line(421), [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(data)))])
            return [data]
        peer = environ.get("REMOTE_ADDR", "")
        environ["cryospy.peer_addr"] = peer
        environ["REMOTE_ADDR"] = client_ip(peer, {"X-Forwarded-For": environ.get("HTTP_X_FORWARDED_FOR", "")},
                                           self.trusted_proxies)
        return self.app(environ, start_response)
