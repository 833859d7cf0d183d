"""A WSGI front for the Chalice app: the part of API Gateway that CryoSpy needs, self-hosted.

Chalice apps expect API Gateway to have matched the route and built a proxy event. ``chalice local`` does
that on a development server; here the same conversion runs under waitress. The request's real client
address goes into ``requestContext.identity.sourceIp`` (the auth-failure defence needs it), unknown paths
get a plain 404, and ``current_request`` is made thread-local because waitress serves from several threads.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from chalice import Chalice

from cryospy.functions.api.http import MAX_JSON_BODY

StartResponse = Callable[..., Any]
MAX_BODY = MAX_JSON_BODY   # every route takes a small JSON document at most

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
            302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
            415: "Unsupported Media Type", 416: "Range Not Satisfiable", 421: "Misdirected Request",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def status_line(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Status')}"


class _ThreadLocalRequest:
    """Mixin that stores ``current_request`` per thread (what chalice.local does for its dev server)."""

    _local = threading.local()

    @property
    def current_request(self) -> Any:
        return getattr(self._local, "request", None)

    @current_request.setter
    def current_request(self, value: Any) -> None:
        self._local.request = value


def make_thread_safe(app: Chalice) -> None:
    if not isinstance(app, _ThreadLocalRequest):
        app.__class__ = type("ThreadLocal" + type(app).__name__, (_ThreadLocalRequest, type(app)), {})


class _Routes:
    def __init__(self, templates: Iterable[str]):
        # Concrete segments before captures, as API Gateway does.
        self.templates = sorted(templates, key=lambda t: [(s.startswith("{"), s) for s in t.split("/")])

    def match(self, path: str) -> tuple[str, dict[str, str]] | None:
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        parts = path.split("/")
        for template in self.templates:
            tparts = template.split("/")
            if len(tparts) != len(parts):
                continue
            captured: dict[str, str] = {}
            for have, want in zip(parts, tparts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    if not have:
                        break
                    captured[want[1:-1]] = have
                elif have != want:
                    break
            else:
                return template, captured
        return None


class LambdaContext:
    def __init__(self, name: str):
        self.function_name = name
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 0

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class ChaliceWSGI:
    def __init__(self, app: Chalice):
        make_thread_safe(app)
        self.app = app
        self.routes = _Routes(app.routes)

    def handles(self, path: str) -> bool:
        return self.routes.match(path) is not None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        matched = self.routes.match(path)
        if matched is None:
            return _json(start_response, 404, {"error": f"no route {path}"})
        template, captured = matched
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json(start_response, 400, {"error": "invalid Content-Length"})
        if length > MAX_BODY:
            return _json(start_response, 413, {"error": f"body larger than {MAX_BODY} bytes"})
        body = environ["wsgi.input"].read(length) if length else None
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        event: dict[str, Any] = {
            "requestContext": {
                "httpMethod": environ["REQUEST_METHOD"], "resourcePath": template, "path": path,
                "identity": {"sourceIp": environ.get("REMOTE_ADDR", "")},
            },
            "headers": headers,
            "pathParameters": captured or None,
            "multiValueQueryStringParameters": query or None,
            "stageVariables": {},
        }
        if body is not None and headers.get("content-type", "").split(";")[0] in self.app.api.binary_types:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
        else:
            event["body"] = body.decode("utf-8", "replace") if body is not None else None
        response = self.app(event, LambdaContext(self.app.app_name))
        out_headers = [(k, str(v)) for k, v in (response.get("headers") or {}).items()]
        for k, values in (response.get("multiValueHeaders") or {}).items():
            out_headers.extend((k, str(v)) for v in values)
        payload = response.get("body") or b""
        if response.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        elif isinstance(payload, str):
            payload = payload.encode()
        start_response(status_line(int(response["statusCode"])), out_headers)
        return [payload]


def _json(start_response: StartResponse, status: int, doc: object) -> list[bytes]:
    data = json.dumps(doc).encode()
    start_response(status_line(status), [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(data)))])
    return [data]
