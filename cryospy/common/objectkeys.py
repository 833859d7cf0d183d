"""Object-key naming: the one place that decides where things live in the bucket.

The API chooses every key a device uploads to; a device never names one. Keys are derived only from the
device's *storage token*, the capture time and the sequence number, so they are deterministic (a replayed
event or a retried handler lands on the same names) and sort by time within a device.

    clips/<token>/<yyyy>/<mm>/<dd>/<yyyymmddThhmmss.fffZ>-<seq>.cse        sealed clip (device-signed)
    derived/thumbs/<clip key>.jpg.cse                                      sealed thumbnail (server-signed)

The token (``_`` and 26 base32 letters, 130 random bits) is a pseudonym the runtime draws when the device is
enrolled and keeps in its device registry; only the registry maps it back to the camera's name, and it is what
the device signs into each clip's header as its id. A token can never be mistaken for a device id: device ids
start with a letter or digit, tokens with ``_``.

Keys made before tokens existed (``clips/<device id>/…``, *legacy* keys) still parse, so the clips already in a
bucket stay browsable, exportable and deletable; :func:`clip_key` no longer makes them and no device may upload
under one (its MinIO policy covers only ``clips/<token>/``).

What a key still shows (decided in ``docs/threat-model.md``, "The MinIO operator"): which device-pseudonym made
the clip, its capture time to the millisecond and its sequence number — the same values the sealed header
carries in the clear at the start of every object, so leaving them out of the key would hide nothing.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryospy.common.timefmt import key_stamp

from .errors import CryoSpyError

BUCKET = "cryospy"
CLIP_PREFIX = "clips/"
CLIP_SUFFIX = ".cse"
DERIVED_PREFIX = "derived/"
THUMB_PREFIX = "derived/thumbs/"

# Letters, digits and a few separators people use when naming cameras ("front door", "cam+2"). No "/", no
# leading separator and no "." so a device id can never form a path segment like ".." in a key.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _+\-]{0,62}$")
_STORAGE_TOKEN = re.compile(r"^_[a-z2-7]{26}$")
_CLIP_KEY = re.compile(
    r"^clips/(?P<owner>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<ts>\d{8}T\d{6}\.\d{3}Z)-(?P<seq>\d{1,19})\.cse$"
)


class ObjectKeyError(CryoSpyError):
    """A device id, storage token or object key that CryoSpy would never produce."""


def validate_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id) or device_id != device_id.strip():
        raise ObjectKeyError(
            f"invalid device id {device_id!r}: use 1-63 letters, digits, spaces, '_', '+' or '-', starting "
            "with a letter or digit (for example 'front-door')"
        )
    return device_id


def device_hex(device_id: str) -> str:
    """A device id as one path segment or URL part: the hex of its UTF-8.

    Why hex: ids may hold spaces and '+', which URLs, file names and MinIO keys each escape differently; hex
    needs no escaping anywhere and cannot form '..'. Used for the index's shard folders and the dashboard's
    device pages."""
    return device_id.encode("utf-8").hex()


def device_from_hex(text: str) -> str:
    """The inverse of :func:`device_hex`; ValueError when ``text`` is not the hex of UTF-8 text."""
    return bytes.fromhex(text).decode("utf-8")


def new_storage_token() -> str:
    """A fresh pseudonym: 130 random bits, never derived from the device's name."""
    return "_" + base64.b32encode(secrets.token_bytes(17)).decode().lower()[:26]


def is_storage_token(text: str) -> bool:
    return isinstance(text, str) and bool(_STORAGE_TOKEN.match(text))


def validate_storage_token(token: str) -> str:
    if not is_storage_token(token):
        raise ObjectKeyError(f"invalid storage token {token!r}: expected '_' and 26 letters a-z or digits 2-7, "
                             "as the server's settings document gives it")
    return token


@dataclass(frozen=True)
class ClipKey:
    """A parsed clip key. ``owner`` is the device's storage token, or its device id in a legacy key."""

    owner: str
    captured_at: datetime
    sequence: int

    @property
    def key(self) -> str:
        ts = self.captured_at.astimezone(UTC)
        stamp = key_stamp(ts)
        return f"{CLIP_PREFIX}{self.owner}/{ts:%Y/%m/%d}/{stamp}-{self.sequence}{CLIP_SUFFIX}"

    @property
    def day(self) -> str:
        return self.captured_at.astimezone(UTC).strftime("%Y-%m-%d")

    @property
    def legacy(self) -> bool:
        """True for a key made before storage tokens: it names the camera."""
        return not is_storage_token(self.owner)


def clip_key(storage_token: str, captured_at: datetime, sequence: int) -> ClipKey:
    return _make(validate_storage_token(storage_token), captured_at, sequence)


def legacy_clip_key(device_id: str, captured_at: datetime, sequence: int) -> ClipKey:
    """A key in the old form that names the camera. Only for an agent that has never learnt its token (the
    server refuses the upload; the clip stays on the camera) and for tests of buckets from before tokens."""
    return _make(validate_device_id(device_id), captured_at, sequence)


def _make(owner: str, captured_at: datetime, sequence: int) -> ClipKey:
    if captured_at.tzinfo is None:
        raise ObjectKeyError("captured_at must be timezone-aware (UTC)")
    if sequence < 0:
        raise ObjectKeyError(f"sequence must be >= 0, got {sequence}")
    # Millisecond precision is what the key keeps; normalise so key and header agree exactly.
    captured_at = captured_at.astimezone(UTC).replace(microsecond=(captured_at.microsecond // 1000) * 1000)
    return ClipKey(owner, captured_at, sequence)


def parse_clip_key(key: str) -> ClipKey:
    """Parse a clip key (token or legacy) back into its parts; anything CryoSpy did not produce raises
    ObjectKeyError."""
    m = _CLIP_KEY.match(key)
    if not m:
        raise ObjectKeyError(f"{key!r} is not a CryoSpy clip key")
    owner = m["owner"] if is_storage_token(m["owner"]) else validate_device_id(m["owner"])
    ts = datetime.strptime(m["ts"], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    if (m["y"], m["m"], m["d"]) != (f"{ts:%Y}", f"{ts:%m}", f"{ts:%d}"):
        raise ObjectKeyError(f"{key!r}: the date folders disagree with the timestamp")
    parsed = ClipKey(owner, ts, int(m["seq"]))
    if parsed.key != key:
        raise ObjectKeyError(f"{key!r} is not in canonical form")
    return parsed


def owner_prefixes(device_id: str, storage_token: str | None) -> list[str]:
    """Every clip prefix a device's objects can live under: its token's, and its name's for legacy keys."""
    owners = [storage_token] if storage_token else []
    return [f"{CLIP_PREFIX}{owner}/" for owner in [*owners, device_id]]


def thumbnail_key(clip: str) -> str:
    return f"{THUMB_PREFIX}{clip}.jpg{CLIP_SUFFIX}"
