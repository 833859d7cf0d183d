"""Live parts: what they are called in the bucket and how they are sealed, shared by the agent and the server.

A live part is one fMP4 fragment of the clip an agent is recording (the init segment, then one moof+mdat),
sealed like a clip (AES-256-GCM chunks, data key wrapped to the deployment key, header and content signed by
the device) but **not evidence**: it has its own prefix, no chain (``prev_hash`` is all zeros), a content type
of its own, and it is never indexed, counted toward quota or retention, nor kept for more than minutes.

    live/<owner>/<yyyymmddThhmmss.fffZ>-<16 hex>.cse       the server picks the name when it hands out a slot

``<owner>`` is the device's storage token (the pseudonym its clips carry, see :mod:`.objectkeys`), so a live
part names no camera either; the sealed header's device field holds the same token.

The time in the name is when the slot was issued (what the runtime's sweep and the bucket's lifecycle rule
age parts by); the random tail makes names unguessable and unique. The sealed header's ``captured_at`` is
when the part's first frame was captured and its ``sequence`` counts parts within one agent run.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from .objectkeys import CLIP_SUFFIX, ObjectKeyError, validate_device_id, validate_storage_token
from .sealed import ZERO_HASH

LIVE_PREFIX = "live/"
LIVE_CONTENT_TYPE = "video/mp4; live-part"
NO_CHAIN = ZERO_HASH          # what a device's first clip chains to; a part chains to nothing else either
_LIVE_KEY = re.compile(r"^live/(?P<owner>[^/]+)/(?P<ts>\d{8}T\d{6}\.\d{3}Z)-(?P<token>[0-9a-f]{16})\.cse$")


@dataclass(frozen=True)
class LivePartKey:
    owner: str                 # the device's storage token
    issued_at: datetime
    token: str

    @property
    def key(self) -> str:
        millis = self.issued_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        return f"{LIVE_PREFIX}{self.owner}/{millis}Z-{self.token}{CLIP_SUFFIX}"


def new_live_part_key(owner: str, issued_at: datetime, token: str | None = None) -> LivePartKey:
    _validate_owner(owner)
    if issued_at.tzinfo is None:
        raise ObjectKeyError("issued_at must be timezone-aware (UTC)")
    issued_at = issued_at.astimezone(UTC).replace(microsecond=(issued_at.microsecond // 1000) * 1000)
    return LivePartKey(owner, issued_at, token or secrets.token_hex(8))


def _validate_owner(owner: str) -> str:
    """A storage token, or (a device from before tokens) a device id."""
    return validate_storage_token(owner) if owner.startswith("_") else validate_device_id(owner)


def parse_live_part_key(key: str) -> LivePartKey:
    """The parts of a live-part key; anything CryoSpy would not have issued raises ObjectKeyError."""
    m = _LIVE_KEY.match(key) if isinstance(key, str) else None
    if not m:
        raise ObjectKeyError(f"{key!r} is not a CryoSpy live-part key")
    try:
        issued = datetime.strptime(m["ts"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise ObjectKeyError(f"{key!r} holds no real time") from None
    parsed = LivePartKey(_validate_owner(m["owner"]), issued, m["token"])
    if parsed.key != key:
        raise ObjectKeyError(f"{key!r} is not in canonical form")
    return parsed
