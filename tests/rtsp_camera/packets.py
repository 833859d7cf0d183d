"""Per-packet digests that survive a change of container, to prove a recording holds the camera's own packets.

The server sends the media file's NAL units unchanged (``server.py``), but a client stores them in its own
framing: MP4 and Matroska prefix each NAL unit with its length (4 bytes by ffmpeg's default), MPEG-TS and
raw ``.h264`` use Annex B start codes, and AAC in MPEG-TS gains an ADTS header. :func:`payload_digest`
hashes the payload without that framing (each NAL unit, canonically length-prefixed; AAC without ADTS),
so a file's packet and the same packet recorded from RTSP into any container give the same digest.

:func:`find_in_loop` finds where a recording starts within the served file and checks that every
recorded packet follows, wrapping at the loop point as the server does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av

__all__ = ["PacketDigest", "find_in_loop", "nal_units", "packet_digests", "payload_digest"]

_START3 = b"\x00\x00\x01"


@dataclass(frozen=True)
class PacketDigest:
    """One demuxed packet: the digest of its payload, whether it is a keyframe, its PTS in seconds."""

    digest: str
    keyframe: bool
    pts: float | None


def packet_digests(path: Path, kind: str = "video") -> list[PacketDigest]:
    """Digest every non-empty packet of the first ``kind`` ("video" or "audio") stream of ``path``, in order."""
    with av.open(str(path)) as container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        if not streams:
            raise ValueError(f"{path} has no {kind} stream")
        stream = streams[0]
        digests = []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's flush packet
                continue
            pts = float(packet.pts * stream.time_base) if packet.pts is not None else None
            data = bytes(packet)
            digests.append(PacketDigest(payload_digest(data, kind), packet.is_keyframe, pts))
    return digests


def payload_digest(data: bytes, kind: str = "video") -> str:
    """SHA-256 of one packet's payload without its container's framing (see the module docstring)."""
    if kind == "video":
        data = b"".join(len(unit).to_bytes(4, "big") + unit for unit in nal_units(data))
    elif len(data) >= 7 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:  # ADTS: 7 bytes, 9 with a CRC
        data = data[7 if data[1] & 1 else 9:]
    return hashlib.sha256(data).hexdigest()


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of one H.264/H.265 access unit, framed with 4-byte lengths or Annex B start codes."""
    units, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        if size == 0 or pos + 4 + size > len(data):
            break
        units.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    if pos == len(data) and units:
        return units
    # Annex B. A NAL unit never ends in a zero byte, so zeros before a start code belong to the next code.
    if not data.startswith(_START3) and not data.startswith(b"\x00" + _START3):
        raise ValueError(f"a {len(data)}-byte packet is neither length-prefixed nor Annex B (starts {data[:8].hex()})")
    return [unit.rstrip(b"\x00") for unit in data.split(_START3)[1:] if unit.rstrip(b"\x00")]


def find_in_loop(recorded: Sequence[PacketDigest], served: Sequence[PacketDigest]) -> int:
    """Index in ``served`` of ``recorded``'s first keyframe, after checking that the rest follows in order.

    A recording may start mid-GOP (a client that copies packets drops those before the first keyframe, but
    not every client does), so the match starts at its first keyframe and runs to its end, wrapping around
    ``served`` as the server's loop does. Raises AssertionError naming the first packet that differs.
    """
    first_key = next((i for i, p in enumerate(recorded) if p.keyframe), None)
    if first_key is None:
        raise AssertionError(f"none of the {len(recorded)} recorded packets is a keyframe")
    wanted = recorded[first_key].digest
    start = next((i for i, p in enumerate(served) if p.digest == wanted), None)
    if start is None:
        raise AssertionError(f"the recording's first keyframe (packet {first_key}) is not a packet of the served file")
    for offset, packet in enumerate(recorded[first_key:]):
        expected = served[(start + offset) % len(served)]
        if packet.digest != expected.digest:
            raise AssertionError(f"recorded packet {first_key + offset} differs from served packet "
                                 f"{(start + offset) % len(served)} (the recording matched from served packet {start})")
    return start
