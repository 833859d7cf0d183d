"""The live page's media: a playlist of a camera's newest live parts, and the parts, decrypted on the fly.

    /media/live-status.json?device=D              is the camera sending parts? (also: "someone is watching")
    /media/live-parts.m3u8?device=D               the newest parts as a live HLS playlist (no ENDLIST)
    /media/live-part.mp4?device=D&key=K&p=init|frag   a part's init segment or its fragment

Asking for the status or the playlist is what marks a camera as watched (:class:`~cryospy.functions.live.hub.
LiveHub`); the agent is told within its long-poll and sends parts until the grace period after the last ask.
Each part is read from the bucket and opened whole (header signature by the device's key, every chunk, the
content trailer) on every request; parts are tens of kilobytes, and nothing decrypted is kept or written.
``EXT-X-PROGRAM-DATE-TIME`` is each part's sealed capture time, so a player can show how far behind real time
the picture is.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from cryospy.common.keys import verify_key_from_text
from cryospy.common.liveparts import parse_live_part_key
from cryospy.common.objectkeys import ObjectKeyError
from cryospy.common.sealed import open_sealed
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.bucket import Bucket
from cryospy.functions.errors import NotFound
from cryospy.functions.live.hub import LivePart
from cryospy.functions.live.parts import part_owner
from cryospy.functions.services import Services

StartResponse = Callable[..., Any]
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def part_url(device_id: str, key: str, piece: str) -> str:
    return f"/media/live-part.mp4?device={quote(device_id, safe='')}&key={quote(key, safe='')}&p={piece}"


def parts_playlist(device_id: str, parts: Sequence[LivePart]) -> str:
    """A live media playlist over ``parts`` (oldest first): a new EXT-X-MAP and a discontinuity per new clip."""
    if not parts:
        raise ValueError("a live playlist needs at least one part")
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS",
             f"#EXT-X-TARGETDURATION:{max(1, math.ceil(max(p.duration_s for p in parts) - 0.001))}",
             f"#EXT-X-MEDIA-SEQUENCE:{parts[0].media_sequence}",
             f"#EXT-X-DISCONTINUITY-SEQUENCE:{parts[0].discontinuity}"]
    previous: LivePart | None = None
    for part in parts:
        if previous is None or part.map_key != previous.map_key:
            if previous is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f'#EXT-X-MAP:URI="{part_url(device_id, part.map_key, "init")}"')
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{utc_stamp(part.captured_at)}", f"#EXTINF:{part.duration_s:.3f},",
                  part_url(device_id, part.key, "frag")]
        previous = part
    return "\n".join(lines) + "\n"


class LiveMedia:
    def __init__(self, services: Services):
        self.services = services

    def __call__(self, start: StartResponse, path: str, query: dict[str, str]) -> list[bytes] | None:
        """The answer for a live path, or None for a path that is not one of these."""
        device_id = query.get("device", "")
        if path == "/media/live-status.json":
            self._watched(device_id)
            parts = self.services.live.parts(device_id)
            doc = {"device_id": device_id, "parts": len(parts),
                   "newest_captured_at": utc_stamp(parts[-1].captured_at) if parts else None}
            return _answer(start, json.dumps(doc).encode(), "application/json")
        if path == "/media/live-parts.m3u8":
            self._watched(device_id)
            parts = self.services.live.parts(device_id)
            if not parts:
                raise LookupError("no live parts from this camera right now")
            return _answer(start, parts_playlist(device_id, parts).encode(), PLAYLIST_TYPE)
        if path == "/media/live-part.mp4":
            return _answer(start, self._piece(device_id, query.get("key", ""), query.get("p", "")), "video/mp4")
        return None

    def _watched(self, device_id: str) -> None:
        try:
            self.services.devices.get(device_id)
        except NotFound:
            raise LookupError("no such camera") from None
        self.services.live.viewer_seen(device_id)

    def _piece(self, device_id: str, key: str, piece: str) -> bytes:
        try:
            if parse_live_part_key(key).owner != part_owner(self.services.devices.get(device_id)):
                raise LookupError("no such live part")
        except (ObjectKeyError, NotFound):
            raise LookupError("no such live part") from None
        hub = self.services.live
        part = hub.part(device_id, key) if piece == "frag" else hub.init_holder(device_id, key) if piece == "init" \
            else None
        if part is None:
            raise LookupError("no such live part (parts last seconds; reload the playlist)")
        device = self.services.devices.get(device_id)
        sealed = Bucket.of(self.services).read(part.key)
        reader = open_sealed(io.BytesIO(sealed), keyring=self.services.vault.keys(),
                             signer_public_key=verify_key_from_text(device.signing_key or ""),
                             expected_object_key=part.key)
        plain = io.BytesIO()
        reader.copy_to(plain)
        data = plain.getbuffer()
        if piece == "init":
            return bytes(data[:part.init_size])
        return bytes(data[part.fragment_offset:part.fragment_offset + part.fragment_size])


def _answer(start: StartResponse, data: bytes, content_type: str) -> list[bytes]:
    start("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data))),
                     ("Cache-Control", "private, no-store"), ("X-Content-Type-Options", "nosniff")])
    return [data]
