"""Per-clip metadata that travels inside the clip: a top-level ISO-BMFF ``uuid`` box at the end of the MP4.

Why inside: the motion summary, the agent's version and the capture details are per-clip metadata, which
must never be plaintext at rest and must be as tamper-evident as the video. Appended to the fragmented MP4
before sealing, the box is encrypted and covered by the device's content signature like every other byte.
Players skip unknown top-level boxes, and byte-range HLS never references it.

Layout: ``size(u32) 'uuid' CLIP_META_UUID(16 bytes) JSON(utf-8)``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .errors import CryoSpyError

CLIP_META_UUID = bytes.fromhex("c7a1e0b53f2a4d6e9b0c5a1d2e3f4a5b")
MAX_META_BYTES = 64 * 1024


class ClipMetaError(CryoSpyError):
    pass


def encode_meta_box(doc: dict[str, Any]) -> bytes:
    payload = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    if len(payload) > MAX_META_BYTES:
        raise ClipMetaError(f"clip metadata is {len(payload)} bytes; the limit is {MAX_META_BYTES}")
    return struct.pack(">I4s", 8 + 16 + len(payload), b"uuid") + CLIP_META_UUID + payload


def decode_meta_payload(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_META_BYTES:
        raise ClipMetaError(f"clip metadata box of {len(payload)} bytes exceeds {MAX_META_BYTES}")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClipMetaError(f"clip metadata is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ClipMetaError("clip metadata must be a JSON object")
    return doc
