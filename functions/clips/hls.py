"""Byte-range HLS playlists over sealed fragmented-MP4 clips: no transcoding, no second copy of the video.

An agent clip is one fragmented MP4: ``ftyp+moov`` (the init segment, no samples) then one ``moof+mdat`` per
keyframe interval (``docs/media.md``). Every fragment starts with a keyframe, so each is an independently
decodable HLS segment *as it already sits in the file*. A playlist therefore only names byte ranges of the
clip's plaintext, which the dashboard's media endpoint (:mod:`cryospy.web.media`) serves by decrypting exactly
the sealed chunks a range covers::

    #EXT-X-MAP:URI="<clip url>",BYTERANGE="<init_size>@0"
    #EXTINF:1.000,
    #EXT-X-BYTERANGE:<fragment size>@<fragment offset>
    <clip url>

This module is pure: it turns :class:`ClipMedia` values (built from :func:`cryospy.functions.clips.mp4.parse_mp4` and
the index) into playlist text and does no I/O, so the HLS handler can write a playlist at ingest and the
dashboard can build one per request from the same inputs, with the same result.

Three playlists (RFC 8216, version 7):

* :func:`clip_playlist` — one clip, VOD;
* :func:`day_playlist` — a device's day, VOD, clips in time order with ``EXT-X-DISCONTINUITY`` and a new
  ``EXT-X-MAP`` at each clip (every clip has its own init segment and its own timeline);
* :func:`live_playlist` — a sliding window over the newest fragments of the newest clips, no ``ENDLIST``.

and :func:`multivariant_playlist`, which wraps any of them with the ``CODECS``/``RESOLUTION``/``BANDWIDTH``
a browser wants to know before it fetches a byte.

Live numbering, and why the caller supplies two bases. A player reloads a live playlist every target
duration and matches segments across reloads by their media sequence number (MSN): the first segment's MSN is
``EXT-X-MEDIA-SEQUENCE`` and each next one is one more, so a segment keeps its number only if
``MEDIA-SEQUENCE`` counts *exactly* the segments that ever slid out of the window. Likewise
``EXT-X-DISCONTINUITY-SEQUENCE`` must count the discontinuity tags that slid out. Neither can be derived from
clock time (motion clips leave gaps, fragment counts vary) nor from the few newest clips alone; they need a
count over the device's history. So :func:`live_playlist` takes ``media_sequence_base`` (segments the device
recorded before the oldest clip passed) and ``discontinuity_sequence_base`` (clips before it, since every clip
after the first starts with a discontinuity), and derives everything else from the clips:

* ``MEDIA-SEQUENCE = media_sequence_base + segments of the passed clips that fall before the window``;
* ``DISCONTINUITY-SEQUENCE = discontinuity_sequence_base + index of the clip holding the window's first
  segment``, and no discontinuity tag is written before that first segment.

Both are pure functions of (clips, bases); two requests a second apart with the same clips agree byte for byte,
and adding a clip advances them by exactly what slid out. The index can keep the two running counters per
device and stamp them on each clip as it joins live view (one writer, so no race). The live set must only
grow at the new end: a clip older than one already shown must not be added later, since HLS cannot insert
segments into a live playlist's past.

Exceptions: invalid input is the caller's bug and raises ``ValueError`` (a quote, newline or leading ``#`` in a
URI would corrupt the playlist, so those are refused rather than escaped). :class:`NothingToPlay` (a
``ValueError``) is the one expected case: no clips or no fragments, which a route turns into a 404.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryospy.common.timefmt import utc_stamp
from cryospy.functions.clips.mp4 import Fragment, Mp4Info

__all__ = [
    "PLAYLIST_CONTENT_TYPE",
    "ClipMedia",
    "NothingToPlay",
    "clip_playlist",
    "day_playlist",
    "live_playlist",
    "multivariant_playlist",
]

#: The media type to serve playlists with (RFC 8216 §4); hls.js and Safari both accept it.
PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"

_VERSION = 7  # EXT-X-MAP in a media playlist needs 6; 7 is what the design settled on
# A URI line or a quoted attribute must not contain a quote, whitespace or control characters, and a line
# that starts with '#' would be read as a tag. Anything else (percent-encoded keys, query strings) passes.
_UNSAFE_URI = re.compile(r'["\s\x00-\x1f\x7f]')
_SAFE_CODEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]{0,63}")


class NothingToPlay(ValueError):
    """There is no segment to list: no clips were given, or a clip has no fragments (a plain MP4)."""


@dataclass(frozen=True)
class ClipMedia:
    """What a playlist needs to know about one clip; the byte ranges are of the clip's *plaintext*.

    ``url`` is where the media endpoint serves that plaintext (with HTTP Range), e.g.
    ``/media/clip?key=clips%2Fcam-1%2F...mp4``; it is written verbatim into the playlist, so percent-encode it
    first. ``captured_at`` (timezone-aware) becomes ``EXT-X-PROGRAM-DATE-TIME`` so players show wall-clock time.
    ``codec`` is the RFC 6381 string from the avcC box (``avc1.4d401e``).
    """

    key: str
    url: str
    captured_at: datetime
    init_size: int
    fragments: tuple[Fragment, ...]
    duration_s: float
    codec: str
    width: int
    height: int
    audio_codec: str | None = None      # "mp4a.40.2" when the clip carries sound

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("ClipMedia.key is empty: pass the clip's object key")
        _check_uri(self.url, f"url of {self.key}")
        if self.captured_at.tzinfo is None or self.captured_at.utcoffset() is None:
            raise ValueError(
                f"captured_at of {self.key} is naive ({self.captured_at.isoformat()}): pass a timezone-aware "
                "datetime (the sealed header's captured_at is UTC)"
            )
        if not _SAFE_CODEC.fullmatch(self.codec):
            raise ValueError(f"codec {self.codec!r} of {self.key} is not an RFC 6381 string such as 'avc1.4d401e'")
        if self.audio_codec is not None and not _SAFE_CODEC.fullmatch(self.audio_codec):
            raise ValueError(f"audio codec {self.audio_codec!r} of {self.key} is not an RFC 6381 string")
        if self.width < 0 or self.height < 0:
            raise ValueError(f"{self.key}: width and height must be >= 0, got {self.width}x{self.height}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"{self.key}: duration_s must be a finite number >= 0, got {self.duration_s!r}")
        if self.init_size <= 0:
            raise ValueError(f"{self.key}: init_size must be > 0 (the ftyp+moov length), got {self.init_size}")
        if not self.fragments:
            raise NothingToPlay(
                f"{self.key} has no fragments: it is a plain MP4, which byte-range HLS cannot cut into segments; "
                "record fragmented MP4 (the edge agent does)"
            )
        end = self.init_size
        for i, frag in enumerate(self.fragments):
            if frag.offset < end or frag.size <= 0:
                raise ValueError(
                    f"{self.key}: fragment {i} at {frag.offset}+{frag.size} overlaps the init segment or the "
                    "previous fragment, or is empty; pass fragments as parse_mp4 returns them"
                )
            if not (math.isfinite(frag.duration_s) and frag.duration_s > 0):
                raise ValueError(f"{self.key}: fragment {i} has duration {frag.duration_s!r}; it must be > 0")
            end = frag.offset + frag.size

    @classmethod
    def from_mp4(cls, info: Mp4Info, *, key: str, url: str, captured_at: datetime) -> ClipMedia:
        """Build from a parsed clip: the usual way in, at ingest."""
        return cls(
            key=key,
            url=url,
            captured_at=captured_at,
            init_size=info.init_size,
            fragments=info.fragments,
            duration_s=info.duration_s,
            codec=info.codec,
            width=info.width,
            height=info.height,
            audio_codec=info.audio_codec,
        )

    @property
    def independent(self) -> bool:
        """True when every fragment starts with a keyframe (always, for agent clips)."""
        return all(f.keyframe for f in self.fragments)


def clip_playlist(clip: ClipMedia) -> str:
    """VOD playlist of one clip: its init segment as ``EXT-X-MAP`` and one byte-range segment per fragment."""
    runs = [_Run(clip, 0, len(clip.fragments))]
    return _render(_head(runs, vod=True), runs, end=True)


def day_playlist(clips: Sequence[ClipMedia]) -> str:
    """VOD playlist of several clips (a device's day) in capture order, one discontinuity per clip boundary.

    Clips are sorted by ``(captured_at, key)`` so the caller's order does not matter; a key given twice is
    refused (it would play twice). Each clip after the first gets ``EXT-X-DISCONTINUITY`` (its timestamps
    restart at zero and its encoder settings may differ) and its own ``EXT-X-MAP``.
    """
    runs = [_Run(c, 0, len(c.fragments)) for c in _ordered(clips)]
    return _render(_head(runs, vod=True), runs, end=True)


def live_playlist(
    clips: Sequence[ClipMedia],
    *,
    window_segments: int = 30,
    media_sequence_base: int = 0,
    discontinuity_sequence_base: int = 0,
) -> str:
    """Sliding live playlist: the newest ``window_segments`` fragments across ``clips``, without ``ENDLIST``.

    ``clips`` are the device's newest clips (sorted here by ``(captured_at, key)``); passing more than the window
    needs is fine. ``media_sequence_base`` is the number of segments, and ``discontinuity_sequence_base`` the
    number of clips, that the device recorded before the oldest clip passed, counted from any fixed origin and
    in the same order; the module docstring explains why they cannot be derived from the clips alone and how
    the sequence numbers follow from them.
    """
    if window_segments < 1:
        raise ValueError(f"window_segments must be >= 1, got {window_segments}")
    if media_sequence_base < 0 or discontinuity_sequence_base < 0:
        raise ValueError(
            f"sequence bases must be >= 0, got media {media_sequence_base}, "
            f"discontinuity {discontinuity_sequence_base}"
        )
    ordered = _ordered(clips)
    total = sum(len(c.fragments) for c in ordered)
    skip = max(0, total - window_segments)
    runs: list[_Run] = []
    first_clip = 0
    remaining = skip
    for index, clip in enumerate(ordered):
        count = len(clip.fragments)
        if remaining >= count:
            remaining -= count
            first_clip = index + 1
            continue
        runs.append(_Run(clip, remaining, count))
        remaining = 0
    # The target duration must not change between reloads (RFC 8216 §6.2.1), so take it over every clip
    # passed, not just the window: it stays put while a short last fragment slides in and out.
    head = _head(runs, vod=False, target_from=ordered)
    head.append(f"#EXT-X-MEDIA-SEQUENCE:{media_sequence_base + skip}")
    head.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence_base + first_clip}")
    return _render(head, runs, end=False)


def multivariant_playlist(clips: Sequence[ClipMedia], *, media_playlist_url: str) -> str:
    """A one-variant multivariant playlist pointing at ``media_playlist_url``.

    It tells the browser the codec and size before any media is fetched, so ``MediaSource.isTypeSupported``
    can refuse early instead of failing mid-stream. ``BANDWIDTH`` is the peak segment bit rate of ``clips``
    and ``AVERAGE-BANDWIDTH`` their mean, as RFC 8216 §4.3.4.2 defines them.
    """
    _check_uri(media_playlist_url, "media_playlist_url")
    ordered = _ordered(clips)
    frags = [f for c in ordered for f in c.fragments]
    peak = max(math.ceil(f.size * 8 / f.duration_s) for f in frags)
    average = math.ceil(sum(f.size for f in frags) * 8 / sum(f.duration_s for f in frags))
    codecs = ",".join(dict.fromkeys([c.codec for c in ordered] + [c.audio_codec for c in ordered if c.audio_codec]))
    width = max(c.width for c in ordered)
    height = max(c.height for c in ordered)
    attrs = f'BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},CODECS="{codecs}"'
    if width and height:
        attrs += f",RESOLUTION={width}x{height}"
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{_VERSION}"]
    if all(c.independent for c in ordered):
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    lines += [f"#EXT-X-STREAM-INF:{attrs}", media_playlist_url]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Run:
    """Fragments ``[first, stop)`` of one clip, in playlist order."""

    clip: ClipMedia
    first: int
    stop: int

    @property
    def fragments(self) -> tuple[Fragment, ...]:
        return self.clip.fragments[self.first : self.stop]


def _head(runs: Sequence[_Run], *, vod: bool, target_from: Sequence[ClipMedia] = ()) -> list[str]:
    frags = [f for r in runs for f in r.fragments]
    if not frags:
        raise NothingToPlay("no clips to list: the playlist would have no segments")
    target = _target_duration([*frags, *(f for c in target_from for f in c.fragments)])
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{_VERSION}", f"#EXT-X-TARGETDURATION:{target}"]
    if vod:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    if all(f.keyframe for f in frags):
        # Only a promise we can keep: a fragment that does not start with a keyframe cannot be decoded alone.
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    return lines


def _render(head: list[str], runs: Sequence[_Run], *, end: bool) -> str:
    lines = list(head)
    for n, run in enumerate(runs):
        clip = run.clip
        if n:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f'#EXT-X-MAP:URI="{clip.url}",BYTERANGE="{clip.init_size}@0"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_program_date_time(clip, run.first)}")
        for frag in run.fragments:
            lines.append(f"#EXTINF:{_duration(frag.duration_s)},")
            lines.append(f"#EXT-X-BYTERANGE:{frag.size}@{frag.offset}")
            lines.append(clip.url)
    if end:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _ordered(clips: Iterable[ClipMedia]) -> list[ClipMedia]:
    ordered = sorted(clips, key=lambda c: (c.captured_at, c.key))
    if not ordered:
        raise NothingToPlay("no clips to list: the playlist would have no segments")
    seen: set[str] = set()
    for clip in ordered:
        if clip.key in seen:
            raise ValueError(f"clip {clip.key} is listed twice; pass each clip once")
        seen.add(clip.key)
    return ordered


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}"


def _target_duration(frags: Iterable[Fragment]) -> int:
    """Ceiling of the longest ``EXTINF`` *as written*, so float noise (1.0000001 s) cannot bump it to 2."""
    return max(1, max(math.ceil(float(_duration(f.duration_s))) for f in frags))


def _program_date_time(clip: ClipMedia, fragment_index: int) -> str:
    """Wall-clock time of a fragment: the clip's capture time plus the fragment's offset into the clip."""
    offset = clip.fragments[fragment_index].start_s - clip.fragments[0].start_s
    moment = (clip.captured_at + timedelta(seconds=offset)).astimezone(UTC)
    return utc_stamp(moment)


def _check_uri(uri: str, what: str) -> None:
    if not uri or uri.startswith("#") or _UNSAFE_URI.search(uri):
        raise ValueError(
            f"{what} {uri!r} cannot go into a playlist: it is empty, starts with '#', or holds a quote, "
            "whitespace or a control character; percent-encode it (urllib.parse.quote)"
        )
