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
  client. The TCP peer stays in ``cryospy.peer_addr``. A trusted proxy's ``X-Forwarded-Proto`` likewise
  sets the scheme (so a proxy that terminates TLS gets Secure cookies and HSTS).
* **Which listener it came to.** The device API and the dashboard may listen on different addresses or ports
  (``dashboard_port``): each listener then answers only its own :data:`ROUTE_FAMILIES` and 404s the rest, so
  opening the camera port to a camera VLAN does not open the dashboard there, and vice versa.
* **TLS** (:class:`TlsChannel`). waitress has no TLS (its maintainers point to a reverse proxy), so the
  runtime wraps each accepted socket itself: the first byte tells a TLS ClientHello (0x16) from plain HTTP.
  TLS connections are wrapped with the deployment's context and run the handshake and every read and write
  non-blocking inside waitress's own event loop, so the body caps above, the output watermark and long-polls
  work unchanged. A plain-HTTP request to a TLS port is parsed as usual and answered with a redirect to
  ``https://`` (GET/HEAD) or a 400 naming the fix, never by the application. HTTPS responses carry HSTS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask
from waitress.utilities import RequestEntityTooLarge

from cryospy.functions.api.client_ip import client_ip, is_trusted_proxy
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
# What cameras (and MinIO) need; everything else is the dashboard's, including the admin API it shares
# its token-holding operators with (the CLI on this machine).
DEVICE_ROUTES = (WEBHOOK_PATH, "/health", "/v1/health", "/v1/device/")
ALL, DEVICE, DASHBOARD = "all", "device", "dashboard"
HSTS = ("Strict-Transport-Security", "max-age=31536000")
TLS_RECORD_HANDSHAKE = 0x16

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def route_family(path: str) -> str:
    """``device`` for what cameras and MinIO call, ``dashboard`` for everything else."""
    return DEVICE if path in DEVICE_ROUTES or path.startswith("/v1/device/") else DASHBOARD


@dataclass(frozen=True)
class Listener:
    """One listening address of the runtime: which route family it answers, and its TLS context if any."""

    host: str
    port: int
    family: str = ALL
    tls: ssl.SSLContext | None = None


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


class ListenerTask(WSGITask):
    """waitress's WSGI task, telling the application which listener the request came to and over what."""

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        channel = self.channel
        environ["cryospy.listener"] = channel.family
        if channel.tls_context is not None:
            environ["cryospy.tls_port"] = True
            environ["wsgi.url_scheme"] = "https" if channel.tls_state == "open" else "http"
        return environ


class CappedChannel(HTTPChannel):
    parser_class = CappedParser
    task_class = ListenerTask
    family = ALL
    tls_context: ssl.SSLContext | None = None
    tls_state = "none"


class TlsChannel(CappedChannel):
    """A waitress channel that speaks TLS, non-blocking, in waitress's event loop.

    States: ``new`` (nothing read yet) → ``handshake`` → ``open``, or ``new`` → ``plain`` when the client
    sent plain HTTP (the front door then answers it with a redirect). SSL objects must not be used from two
    threads at once, and waitress writes from its worker threads while the loop thread reads, so every
    SSL call holds ``_tls_lock`` (they are non-blocking, so it is held for microseconds).
    """

    tls_state = "new"

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any, map: Any = None):
        self._tls_lock = threading.Lock()
        self._want_write = False     # the handshake needs the socket writable before it can go on
        super().__init__(server, sock, addr, adj, map=map)

    def writable(self) -> bool:
        return self._want_write or bool(super().writable())

    def handle_write(self) -> None:
        if self._want_write:
            self._want_write = False
            self.handle_read()
            return
        super().handle_write()

    def _start(self) -> bool:
        """Peek at the first byte and set up TLS (or plain); True once application data may be read."""
        if self.tls_state == "new":
            try:
                first = self.socket.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return False
            except OSError:
                self.handle_close()
                return False
            if not first:
                self.handle_close()
                return False
            if first[0] != TLS_RECORD_HANDSHAKE:
                self.tls_state = "plain"
                return True
            assert self.tls_context is not None
            self.socket = self.tls_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
            self.tls_state = "handshake"
        if self.tls_state == "handshake":
            try:
                with self._tls_lock:
                    self.socket.do_handshake()
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLWantWriteError:
                self._want_write = True
                return False
            except OSError as exc:   # ssl.SSLError included: a client that does not trust us, or garbage
                log.debug("TLS handshake with %s failed: %s", self.addr, exc)
                self.handle_close()
                return False
            self.tls_state = "open"
        return True

    def handle_read(self) -> None:
        if not self._start():
            return
        if self.tls_state == "plain":
            super().handle_read()
            return
        try:
            with self._tls_lock:
                data = self.socket.recv(self.adj.recv_bytes)
                while data and self.socket.pending():    # decrypted already: select() would not say so
                    data += self.socket.recv(self.socket.pending())
        except ssl.SSLWantReadError:
            return
        except ssl.SSLWantWriteError:
            self._want_write = True
            return
        except OSError as exc:
            log.debug("TLS read from %s failed: %s", self.addr, exc)
            self.handle_close()
            return
        if not data:
            self.handle_close()
            return
        self.last_activity = time.time()
        self.received(data)

    def send(self, data: bytes, do_close: bool = True) -> int:
        if self.tls_state != "open":
            return int(super().send(data, do_close=do_close))
        try:
            with self._tls_lock:
                return int(super().send(data, do_close=do_close))
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0     # waitress retries the same bytes when the socket is writable again


def channel_class(listener: Listener) -> type[CappedChannel]:
    base = TlsChannel if listener.tls is not None else CappedChannel
    return type(f"{listener.family.capitalize()}{base.__name__}", (base,),
                {"family": listener.family, "tls_context": listener.tls})


def server_options() -> dict[str, Any]:
    """waitress adjustments that go with :func:`install`: a backstop cap, no spooling, proxies handled here."""
    return {"max_request_body_size": LARGEST_BODY + 1, "inbuf_overflow": LARGEST_BODY + 1,
            # waitress would delete X-Forwarded-For before the app sees it; the front door applies the
            # trusted_proxies rule itself (one rule for the device API and the dashboard).
            "clear_untrusted_proxy_headers": False}


def listening_sockets(listeners: Iterable[Listener]) -> list[socket.socket]:
    """Bound, listening sockets for waitress's ``sockets=`` (so each listener's role is known by its socket)."""
    sockets: list[socket.socket] = []
    try:
        for listener in listeners:
            family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((listener.host, listener.port))
            sock.listen(1024)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def install(socket_map: dict[int, Any], listeners: Iterable[Listener] = ()) -> None:
    """Give every listening socket in a waitress socket map (``create_server(map=...)``) its channel:
    :class:`CappedParser` for requests, the listener's route family and TLS. A socket not in ``listeners``
    serves every route without TLS."""
    by_address = {(listener.host, listener.port): listener for listener in listeners}
    for server_socket in list(socket_map.values()):
        if isinstance(server_socket, BaseWSGIServer):
            address = server_socket.socket.getsockname()[:2]
            server_socket.channel_class = channel_class(by_address.get(address, Listener(*address)))


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


def _answer(start_response: Callable[..., Any], status: int, message: str,
            headers: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
    data = json.dumps({"error": message}).encode()
    start_response(status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                         *headers])
    return [data]


class FrontDoor:
    """WSGI middleware in front of the whole runtime: Host check, plain HTTP on a TLS port, the listener's
    route family, then the client's address and scheme; HSTS on every HTTPS answer."""

    def __init__(self, app: WsgiApp, names: frozenset[str], trusted_proxies: tuple[str, ...]):
        self.app, self.names, self.trusted_proxies = app, names, trusted_proxies

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO") or "/"
        host = environ.get("HTTP_HOST")
        if path != WEBHOOK_PATH and not host_allowed(host, self.names):
            return _answer(start_response, 421, f"this CryoSpy runtime does not answer to the name {host!r}; if "
                           "that is how you reach it, add the name to allowed_hosts in <data-dir>/server.json "
                           "and restart")
        if environ.get("cryospy.tls_port") and environ.get("wsgi.url_scheme") != "https":
            return self._plain_on_tls_port(environ, start_response, path)
        family = environ.get("cryospy.listener", ALL)
        if family != ALL and route_family(path) != family:
            return _answer(start_response, 404, f"no route {path} on this address")
        peer = environ.get("REMOTE_ADDR", "")
        environ["cryospy.peer_addr"] = peer
        environ["REMOTE_ADDR"] = client_ip(peer, {"X-Forwarded-For": environ.get("HTTP_X_FORWARDED_FOR", "")},
                                           self.trusted_proxies)
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
        if proto in ("http", "https") and is_trusted_proxy(peer, self.trusted_proxies):
            environ["wsgi.url_scheme"] = proto
        if environ.get("wsgi.url_scheme") != "https":
            return self.app(environ, start_response)

        def with_hsts(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, HSTS], exc_info)

        return self.app(environ, with_hsts)

    @staticmethod
    def _plain_on_tls_port(environ: dict[str, Any], start_response: Callable[..., Any], path: str) -> list[bytes]:
        """Plain HTTP sent to a TLS port: browsers are sent to https://, anything else is told to use it.
        The Host was checked above, so the redirect cannot point anywhere this runtime does not answer to."""
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        target = f"https://{host}{quote(path)}"
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            query = environ.get("QUERY_STRING")
            location = f"{target}?{query}" if query else target
            return _answer(start_response, 301, f"this port speaks HTTPS: {location}", (("Location", location),))
        return _answer(start_response, 400, f"this port speaks HTTPS only; send the request to {target}")
