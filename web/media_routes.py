"""The dashboard's media endpoint: clips, playlists and thumbnails, decrypted on the fly for a logged-in admin.

    /media/clip.mp4?key=K[&download=1]   the clip's plaintext fMP4, with exact HTTP Range (206) support
    /media/clip.m3u8?key=K               a byte-range HLS playlist over that URL (no transcoding, no copy)
    /media/day.m3u8?device=D&day=YYYY-MM-DD   the device's day as one playlist, discontinuities between clips
    /media/thumb.jpg?key=K               the clip's thumbnail
    /media/latest.json?device=D          the device's newest playable clip
    /media/live.m3u8?device=D            a sliding live playlist over the device's newest clips (no ENDLIST)
    /media/live-status.json?device=D     whether live parts are arriving (and: someone watches); live_media.py
    /media/live-parts.m3u8?device=D      the newest live parts as a live playlist (seconds behind)
    /media/live-part.mp4?device=D&key=K&p=init|frag   one live part's init segment or fragment

Every answer is for the logged-in account's cameras only: a camera (or a clip of a camera) a viewer was not
given answers exactly as one that does not exist ("no such camera", "no such clip", 404).

The paths end in ``.mp4``/``.m3u8``/``.jpg`` because players check the extension of segment URLs. Only
chunks a range needs are fetched from MinIO and decrypted; nothing is written to disk.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

from cryospy.common.accounts import Account
from cryospy.common.keys import verify_key_from_text
from cryospy.common.objectkeys import ObjectKeyError
from cryospy.common.sealed import MAX_HEADER_SIZE, SealedFormatError, open_bytes
from cryospy.common.timefmt import parse_utc
from cryospy.functions.api import validate
from cryospy.functions.bucket import Bucket
from cryospy.functions.clips.hls import ClipMedia, NothingToPlay, clip_playlist, day_playlist, live_playlist
from cryospy.functions.clips.mp4 import Fragment
from cryospy.functions.clips.place import locate
from cryospy.functions.errors import BadRequest, NotFound
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.services import Services

from .live_media import LiveMedia
from .media import serve_sealed_range

StartResponse = Callable[..., Any]
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_CLIP_ROUTES = ("/media/clip.mp4", "/media/clip.m3u8", "/media/thumb.jpg")   # the rest name a camera
LIVE_CLIPS = 4               # clips passed to the live playlist (more than the window needs is fine)
LIVE_WINDOW_SEGMENTS = 30    # about half a minute of 1-second fragments


def _clip_url(key: str) -> str:
    return "/media/clip.mp4?key=" + quote(key, safe="")


def clip_media(record: ClipRecord) -> ClipMedia:
    """What a playlist needs of a clip read with its fragments."""
    fragments = tuple(Fragment(offset=o, size=n, start_s=st, duration_s=d, keyframe=True)
                      for o, n, st, d in record.fragments or ())
    return ClipMedia(key=record.key, url=_clip_url(record.key),
                     captured_at=parse_utc(record.captured_at),
                     init_size=record.init_size, fragments=fragments, duration_s=record.duration_s,
                     codec=record.codec, width=record.width, height=record.height,
                     audio_codec=record.audio_codec)


class ClipGone(LookupError):
    """The index keeps a tombstone: the object was deleted outside CryoSpy (functions/retention/removed.py)."""


class MediaRoutes:
    def __init__(self, services: Services):
        self.services = services
        self.live_parts = LiveMedia(services)

    def __call__(self, environ: dict[str, Any], start: StartResponse, account: Account) -> list[bytes] | Any:
        path = environ.get("PATH_INFO", "")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            if path not in _CLIP_ROUTES and not account.can_see(query.get("device", "")):
                raise LookupError("no such camera")   # checked first: no other answer tells a camera exists
            if path == "/media/clip.mp4":
                return self._clip(environ, start, self._record(query, account), query.get("download") == "1")
            if path == "/media/clip.m3u8":
                return self._text(start, clip_playlist(clip_media(self._record(query, account))), PLAYLIST_TYPE)
            if path == "/media/day.m3u8":
                device, day = query.get("device", ""), validate.day(query.get("day", ""))
                clips = [clip_media(c) for c in self.services.index.clips_for_day(device, day, with_fragments=True)
                         if c.fragments and c.playable]
                if not clips:
                    return self._error(start, "404 Not Found", "no clips that day")
                return self._text(start, day_playlist(clips), PLAYLIST_TYPE)
            if path == "/media/thumb.jpg":
                return self._thumb(start, self._record(query, account))
            if path == "/media/live.m3u8":
                return self._live(start, query.get("device", ""))
            if path == "/media/latest.json":
                return self._latest(start, query.get("device", ""))
            if path.startswith("/media/live-"):
                answer = self.live_parts(start, path, query)
                if answer is not None:
                    return answer
        except BadRequest as exc:
            return self._error(start, "400 Bad Request", exc.message)
        except ClipGone as exc:
            return self._error(start, "410 Gone", str(exc))
        except LookupError as exc:
            return self._error(start, "404 Not Found", str(exc))
        except (NothingToPlay, SealedFormatError) as exc:
            return self._error(start, "422 Unprocessable Entity", f"cannot play this clip: {exc}")
        return self._error(start, "404 Not Found", "no such media")

    def _record(self, query: dict[str, str], account: Account) -> ClipRecord:
        key = query.get("key", "")
        try:
            place = locate(self.services.devices, key)
        except (ObjectKeyError, NotFound):
            raise LookupError("no such clip") from None
        if not account.can_see(place.device_id):
            raise LookupError("no such clip")
        record = self.services.index.get_clip(place.device_id, place.day, key)
        if record is None:
            raise LookupError("no such clip")
        if record.missing:
            raise ClipGone("this clip was deleted from the bucket outside CryoSpy; only its index entry is left")
        return record

    def _get(self, key: str, first: int, last: int):  # type: ignore[no-untyped-def]
        return Bucket.of(self.services).get(key, first=first, last=last)

    def _clip(self, environ: dict[str, Any], start: StartResponse, record: ClipRecord, download: bool) -> Any:
        key = record.key
        device = self.services.devices.get(record.device_id)
        name = f"{record.device_id}_{record.captured_at.replace(':', '-')}.mp4" if download else None
        response = serve_sealed_range(
            header_fetch=lambda: self._get(key, 0, min(MAX_HEADER_SIZE, record.sealed_size) - 1).read(),
            range_fetch=lambda first, last: self._get(key, first, last),
            object_size=record.sealed_size, keyring=self.services.vault.keys(),
            signer_public_key=verify_key_from_text(device.signing_key), expected_object_key=key,
            range_header=environ.get("HTTP_RANGE"), content_type="video/mp4", download_name=name)
        start(response.status_line, response.headers)
        return response.body

    def _thumb(self, start: StartResponse, record: ClipRecord) -> list[bytes]:
        if not record.thumb_key:
            return self._error(start, "404 Not Found", "this clip has no thumbnail")
        sealed = Bucket.of(self.services).read(record.thumb_key)
        keys = self.services.vault.keys()
        jpeg = open_bytes(sealed, keyring=keys, signer_public_key=keys.server_signing_key.public_key(),
                          expected_object_key=record.thumb_key)
        start("200 OK", [("Content-Type", "image/jpeg"), ("Content-Length", str(len(jpeg))),
                         ("Cache-Control", "private, max-age=3600"), ("X-Content-Type-Options", "nosniff")])
        return [jpeg]

    def _latest(self, start: StartResponse, device_id: str) -> list[bytes]:
        """The newest playable clip of a device (what the live view plays next)."""
        days = self.services.index.days(device_id, newest=2)
        newest = None
        for day in reversed(days):
            playable = [c for c in self.services.index.clips_for_day(device_id, day) if c.playable]
            if playable:
                newest = playable[-1]
                break
        if newest is None:
            return self._text(start, json.dumps({"device_id": device_id, "clip": None}), "application/json")
        doc = {"device_id": device_id, "clip": {"key": newest.key, "captured_at": newest.captured_at,
                                                "duration_s": newest.duration_s, "motion": newest.motion}}
        return self._text(start, json.dumps(doc), "application/json")

    def _live(self, start: StartResponse, device_id: str) -> list[bytes]:
        """The live view's playlist: the newest segments of the device's newest clips. The sequence bases come
        from the index's live numbering (``TinyDBIndex._live_stamp``), so a player reloading it every few
        seconds sees segments keep their numbers while new clips slide in and old ones out."""
        clips = self.services.index.live_clips(device_id, LIVE_CLIPS)
        if not clips:
            return self._error(start, "404 Not Found", "no clips from this camera yet")
        segments_before, clips_before = clips[0].live or (0, 0)
        text = live_playlist([clip_media(c) for c in clips], window_segments=LIVE_WINDOW_SEGMENTS,
                             media_sequence_base=segments_before, discontinuity_sequence_base=clips_before)
        return self._text(start, text, PLAYLIST_TYPE)

    @staticmethod
    def _text(start: StartResponse, text: str, content_type: str) -> list[bytes]:
        data = text.encode()
        start("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data))),
                         ("Cache-Control", "private, no-cache")])
        return [data]

    @staticmethod
    def _error(start: StartResponse, status: str, message: str) -> list[bytes]:
        data = message.encode()
        start(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data))),
                       ("Cache-Control", "no-store")])
        return [data]


