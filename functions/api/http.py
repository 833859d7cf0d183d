"""Small helpers that keep the routes in app.py to a few lines: strict JSON parsing and error mapping."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from chalice.app import Request, Response

from cryospy.common import database
from cryospy.functions.api import json_limits
from cryospy.functions.errors import ApiError, BadRequest, PayloadTooLarge, StoreUnavailable

log = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024
F = TypeVar("F", bound=Callable[..., Any])


def json_response(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    h.update(headers or {})
    return Response(body=json.dumps(doc), status_code=status, headers=h)


def not_modified(etag: str) -> Response:
    return Response(body="", status_code=304, headers={"ETag": etag, "Cache-Control": "no-store"})


def api_view(func: F) -> F:
    """Turn ApiError into a JSON error response, and an unavailable MinIO or database (docs/postgres.md) into a
    503 with Retry-After; anything else is a bug and stays a 500 (logged, no detail)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except ApiError as exc:
            return json_response(exc.body(), exc.status)
        except StoreUnavailable as exc:
            # MinIO down or without quorum: not the caller's fault and not a bug; it may work in a moment.
            log.warning("%s: %s", func.__name__, exc)
            return json_response({"error": str(exc)}, 503, {"Retry-After": "5"})
        except Exception as exc:
            if database.unavailable(exc):
                log.warning("%s: the database is unavailable: %s", func.__name__, exc)
                return json_response({"error": "the database is unavailable; try again when PostgreSQL is back"},
                                     503, {"Retry-After": "5"})
            log.exception("unhandled error in %s", func.__name__)
            return json_response({"error": "internal error; see the runtime log"}, 500)
        if isinstance(result, Response):
            return result
        return json_response(result)

    return wrapper  # type: ignore[return-value]


def json_object(request: Request) -> dict[str, Any]:
    """Parse the body as one JSON object, with 400/413 answers a client can act on."""
    raw = request.raw_body or b""
    if len(raw) > MAX_JSON_BODY:
        raise PayloadTooLarge(f"request body is {len(raw)} bytes; the limit is {MAX_JSON_BODY}", field="body")
    if not raw:
        raise BadRequest("request body is empty; send a JSON object", field="body")
    try:
        doc = json_limits.loads(raw)
    except json_limits.JsonTooDeep as exc:
        raise BadRequest(str(exc), field="body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object", field="body")
    return doc


def header(request: Request, name: str) -> str | None:
    value = request.headers.get(name.lower())
    return value if value else None
