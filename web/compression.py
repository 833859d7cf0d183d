"""gzip for the dashboard's HTML and JSON: a full day page is mostly repeated markup and shrinks about tenfold.

Only complete bodies (lists of bytes) of text types are compressed; media streams, downloads and anything already
encoded pass through untouched. Pages that carry a CSRF token mask it per response (``server.mask_csrf``), so
compression does not open a BREACH-style length oracle on it.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from typing import Any

COMPRESSIBLE = ("text/html", "application/json", "text/plain")
MIN_BYTES = 1024
LEVEL = 6


def gzip_response(app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]],
                  environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
    if "gzip" not in environ.get("HTTP_ACCEPT_ENCODING", "") or environ.get("REQUEST_METHOD") == "HEAD":
        return app(environ, start)
    captured: list[Any] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        captured[:] = [status, headers, exc_info]
        return _no_write

    body = app(environ, capture)
    status, headers, exc_info = captured
    names = {k.lower(): v for k, v in headers}
    compressible = (isinstance(body, list) and "content-encoding" not in names and "content-range" not in names
                    and names.get("content-type", "").split(";")[0].strip() in COMPRESSIBLE)
    if compressible:
        data = b"".join(body)
        if len(data) >= MIN_BYTES:
            packed = gzip.compress(data, LEVEL, mtime=0)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [
                ("Content-Length", str(len(packed))), ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
            body = [packed]
    start(status, headers, exc_info) if exc_info else start(status, headers)
    return body


def _no_write(data: bytes) -> None:
    raise RuntimeError("the dashboard does not use WSGI write(); return the body instead")
