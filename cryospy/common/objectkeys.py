"""Object-key naming: the one place that decides where things live in the bucket.

The API chooses every key a device uploads to; a device never names one. Keys are derived only from the
device id, the capture time and the sequence number, so they are deterministic (a replayed event or a
retried handler lands on the same names) and sort by time within a device.

    clips/<device>/<yyyy>/<mm>/<dd>/<yyyymmddThhmmss.fffZ>-<seq>.cse      sealed clip (device-signed)
    derived/thumbs/<clip key>.jpg.cse                                      sealed thumbnail (server-signed)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import CryoSpyError

BUCKET = "cryospy"
CLIP_PREFIX = "clips/"
CLIP_SUFFIX = ".cse"
DERIVED_PREFIX = "derived/"
THUMB_PREFIX = "derived/thumbs/"

# Letters, digits and a few separators people use when naming cameras ("front door", "cam+2"). No "/", no
# leading separator and no "." so a device id can never form a path segment like ".." in a key.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _+\-]{0,62}$")
_CLIP_KEY = re.compile(
    r"^clips/(?P<device>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<ts>\d{8}T\d{6}\.\d{3}Z)-(?P<seq>\d{1,19})\.cse$"
)


class ObjectKeyError(CryoSpyError):
    """A device id or object key that CryoSpy would never produce."""


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id) or device_id != device_id.strip():
        raise ObjectKeyError(
            f"invalid device id {device_id!r}: use 1-63 letters, digits, spaces, '_', '+' or '-', starting "
            "with a letter or digit (for example 'front-door')"
        )
    return device_id


@dataclass(frozen=True)
class ClipKey:
    device_id: str
    captured_at: datetime
    sequence: int

    @property
    def key(self) -> str:
        ts = self.captured_at.astimezone(UTC)
        stamp = ts.strftime("%Y%m%dT%H%M%S.") + f"{ts.microsecond // 1000:03d}Z"
        return f"{CLIP_PREFIX}{self.device_id}/{ts:%Y/%m/%d}/{stamp}-{self.sequence}{CLIP_SUFFIX}"

    @property
    def day(self) -> str:
        return self.captured_at.astimezone(UTC).strftime("%Y-%m-%d")


def clip_key(device_id: str, captured_at: datetime, sequence: int) -> ClipKey:
    validate_device_id(device_id)
    if captured_at.tzinfo is None:
        raise ObjectKeyError("captured_at must be timezone-aware (UTC)")
    if sequence < 0:
        raise ObjectKeyError(f"sequence must be >= 0, got {sequence}")
    # Millisecond precision is what the key keeps; normalise so key and header agree exactly.
    captured_at = captured_at.astimezone(UTC).replace(microsecond=(captured_at.microsecond // 1000) * 1000)
    return ClipKey(device_id, captured_at, sequence)


def parse_clip_key(key: str) -> ClipKey:
    """Parse a clip key back into its parts; anything CryoSpy did not produce raises ObjectKeyError."""
    m = _CLIP_KEY.match(key)
    if not m:
        raise ObjectKeyError(f"{key!r} is not a CryoSpy clip key")
    device = validate_device_id(m["device"])
    ts = datetime.strptime(m["ts"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    if (m["y"], m["m"], m["d"]) != (f"{ts:%Y}", f"{ts:%m}", f"{ts:%d}"):
        raise ObjectKeyError(f"{key!r}: the date folders disagree with the timestamp")
    parsed = ClipKey(device, ts, int(m["seq"]))
    if parsed.key != key:
        raise ObjectKeyError(f"{key!r} is not in canonical form")
    return parsed


def thumbnail_key(clip: str) -> str:
    return f"{THUMB_PREFIX}{clip}.jpg{CLIP_SUFFIX}"
