"""The textual forms of an instant that CryoSpy writes, each made by one function here.

Clip metadata, the index, events and mails compare and sort these strings, so each form must be made one way:

* :func:`utc_stamp` ``2026-12-01T22:15:50.855Z``: the default (ISO 8601 UTC, milliseconds, a ``Z``);
* :func:`utc_stamp_seconds` ``2026-12-01T22:15:50Z``: records stored with whole seconds (the device
  registry's times, upload slots' expiry, the auth-defence view, the agent's settings cache);
* :func:`key_stamp` ``20261201T221550.855Z``: the time inside a clip's object key (part of the stored
  key format, see :mod:`cryospy.common.objectkeys`);
* :func:`compact_stamp` ``20261201T221550Z``: SigV4's ``X-Amz-Date`` and download file names.

:func:`parse_utc` reads any of the ISO 8601 forms back.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["compact_stamp", "key_stamp", "parse_utc", "utc_now", "utc_stamp", "utc_stamp_seconds"]


def utc_now() -> str:
    """Now, as :func:`utc_stamp`."""
    return utc_stamp(datetime.now(UTC))


def utc_stamp(when: datetime) -> str:
    """``when`` (timezone-aware) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_stamp_seconds(when: datetime) -> str:
    """``when`` (timezone-aware) as ``YYYY-MM-DDTHH:MM:SSZ`` (the fraction dropped, not rounded)."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def key_stamp(when: datetime) -> str:
    """``when`` (timezone-aware) as ``YYYYMMDDTHHMMSS.mmmZ``, the form object keys carry."""
    ts = when.astimezone(UTC)
    return ts.strftime("%Y%m%dT%H%M%S.") + f"{ts.microsecond // 1000:03d}Z"


def compact_stamp(when: datetime) -> str:
    """``when`` (timezone-aware) as ``YYYYMMDDTHHMMSSZ`` (SigV4's ``X-Amz-Date``; file names)."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_utc(text: str) -> datetime:
    """The inverse of :func:`utc_stamp` (any ISO 8601 with an offset); ValueError for anything else."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; CryoSpy times are UTC with a Z")
    return when
