"""Field readers for JSON requests: each either returns a clean value or raises BadRequest naming the field."""

from __future__ import annotations

import base64
import binascii
import math
from datetime import UTC, date, datetime
from typing import Any

from cryospy.functions.errors import BadRequest

_MISSING = object()


def _get(doc: dict[str, Any], name: str, required: bool) -> Any:
    value = doc.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise BadRequest(f"'{name}' is required", field=name)
        return _MISSING
    return value


def integer(doc: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = _get(doc, name, default is None)
    if value is _MISSING:
        return default  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer, got {type(value).__name__}", field=name)
    if not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be between {lo} and {hi}, got {value}", field=name)
    return value


def number(doc: dict[str, Any], name: str, lo: float, hi: float, default: float | None = None) -> float:
    value = _get(doc, name, default is None)
    if value is _MISSING:
        return default  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"'{name}' must be a finite number", field=name)
    if not lo <= value <= hi:
        raise BadRequest(f"'{name}' must be between {lo} and {hi}, got {value}", field=name)
    return float(value)


def string(doc: dict[str, Any], name: str, max_len: int = 256, default: str | None = None) -> str:
    value = _get(doc, name, default is None)
    if value is _MISSING:
        return default  # type: ignore[return-value]
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string", field=name)
    if len(value) > max_len:
        raise BadRequest(f"'{name}' is longer than {max_len} characters", field=name)
    return value


def boolean(doc: dict[str, Any], name: str, default: bool | None = None) -> bool:
    value = _get(doc, name, default is None)
    if value is _MISSING:
        return default  # type: ignore[return-value]
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false", field=name)
    return value


def timestamp(doc: dict[str, Any], name: str) -> datetime:
    raw = string(doc, name, 64)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{name}' must be an RFC 3339 time such as 2025-01-31T12:00:00Z", field=name) from None
    if value.tzinfo is None:
        raise BadRequest(f"'{name}' must carry a time zone (for example a trailing Z)", field=name)
    value = value.astimezone(UTC)
    if not 2000 <= value.year <= 2999:
        raise BadRequest(f"'{name}' is out of range: {raw}", field=name)
    return value


def sha256_b64(doc: dict[str, Any], name: str) -> str:
    """Accept the digest as hex or base64; return the base64 form S3's x-amz-checksum-sha256 wants."""
    raw = string(doc, name, 88)
    try:
        digest = bytes.fromhex(raw) if len(raw) == 64 else base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        digest = b""
    if len(digest) != 32:
        raise BadRequest(f"'{name}' must be a SHA-256 digest (64 hex digits or 44 base64 characters)", field=name)
    return base64.b64encode(digest).decode()


def only_known(doc: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(doc) - known)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'; known fields: {', '.join(sorted(known))}",
                         field=unknown[0])


def day(value: object) -> str:
    """A UTC day as the index names it (``YYYY-MM-DD``, a real date). The index builds file paths from it, so
    this is checked wherever a day enters the index, not only where a request parses it."""
    if isinstance(value, str) and len(value) == 10 and value[4] == value[7] == "-" \
            and (value[:4] + value[5:7] + value[8:]).isascii() and (value[:4] + value[5:7] + value[8:]).isdigit():
        try:
            if date.fromisoformat(value).isoformat() == value:
                return value
        except ValueError:
            pass
    raise BadRequest(f"invalid day {str(value)[:40]!r}: give a date as YYYY-MM-DD, e.g. 2026-01-31", field="day")
