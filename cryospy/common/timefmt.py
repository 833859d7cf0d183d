"""The one textual form of an instant that CryoSpy writes: ISO 8601 UTC, milliseconds, a ``Z``.

Clip metadata, object keys' companions, the index and mails all compare and sort these strings, so they
must be made one way: ``2026-12-01T22:15:50.855Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_utc", "utc_stamp"]


def utc_stamp(when: datetime) -> str:
    """``when`` (timezone-aware) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """The inverse of :func:`utc_stamp` (any ISO 8601 with an offset); ValueError for anything else."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; CryoSpy times are UTC with a Z")
    return when
