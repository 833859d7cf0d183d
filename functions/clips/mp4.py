"""Read what HLS playback and the clip index need from an MP4, in pure Python, without ffprobe.

The HLS handler never transcodes: it needs the byte range of the init segment (ftyp+moov, the
``EXT-X-MAP``) and of every fragment (moof+mdat, one ``EXT-X-BYTERANGE`` segment each), with their
times. Those live in box headers and in the small moov/moof boxes, so :func:`parse_mp4` reads only
those through a ``read_at(offset, length)`` callback and skips every mdat. Backed by a decrypting range
reader, that means a sealed clip is indexed by opening a few kilobytes of it, never the whole video.

What is extracted (video track only; audio or other tracks are ignored):

* duration, coded width/height, average fps, the RFC 6381 codec string (``avc1.4d401e``) from avcC/hvcC
  for the HLS ``CODECS`` attribute, the media timescale and the file size;
* fragmented MP4 (moov with mvex, then moof/mdat pairs): per fragment its byte offset and size, start
  (``tfdt`` decode time, or the running sum when absent), duration (trun sample durations, else the
  tfhd default, else trex's) and whether its first sample is a sync sample (keyframe);
* plain MP4: the duration from the sample table (stts), with ``fragments=()``.

Exceptions::

    CryoSpyError
    └── Mp4Error     (anything malformed, truncated or unsupported; never a struct/Index/Value error)

The parser is written against hostile input: every read is bounds-checked, every count is checked
against the bytes that could hold it before looping, and nothing is allocated from a size field alone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryospy.common.errors import CryoSpyError

__all__ = ["Fragment", "Mp4Error", "Mp4Info", "ReadAt", "parse_mp4", "parse_mp4_file"]

#: ``read_at(offset, length)`` returns exactly ``length`` bytes starting at ``offset`` (fewer only at EOF).
ReadAt = Callable[[int, int], bytes]

_MAX_MOOV = 128 * 1024 * 1024  # a day of 30 fps plain MP4 needs ~40 MiB of sample tables
_MAX_MOOF = 16 * 1024 * 1024
_SAMPLE_IS_NON_SYNC = 0x00010000

# tfhd flags
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TFHD_DURATION_IS_EMPTY = 0x010000
# trun flags
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTO = 0x000800


class Mp4Error(CryoSpyError):
    """The bytes are not an MP4 this parser can index: malformed, truncated or missing a video track."""


@dataclass(frozen=True)
class Fragment:
    """One moof+mdat: an independently addressable HLS segment when ``keyframe`` is true."""

    offset: int
    size: int
    start_s: float
    duration_s: float
    keyframe: bool


@dataclass(frozen=True)
class Mp4Info:
    """What the index and the HLS playlist need; ``init_size`` is the ``EXT-X-MAP`` byte range ``0..n``."""

    duration_s: float
    width: int
    height: int
    fps: float | None
    codec: str
    init_size: int
    fragments: tuple[Fragment, ...]
    timescale: int
    size: int
    audio_codec: str | None = None     # "mp4a.40.2" when the clip carries AAC sound (the agent's only audio)


def parse_mp4_file(path: Path | str) -> Mp4Info:
    """Parse a plaintext MP4 file on disk."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise Mp4Error(f"cannot open {path}: {exc.strerror or exc}") from exc
    with handle:
        size = path.stat().st_size

        def read_at(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        return parse_mp4(read_at, size)


def parse_mp4(read_at: ReadAt, size: int) -> Mp4Info:
    """Index an MP4 of ``size`` bytes, reading only box headers, the moov and the moofs via ``read_at``."""
    if size < 8:
        raise Mp4Error(f"{size} bytes is too small to be an MP4 (a single box header is 8 bytes)")
    boxes = _top_level_boxes(read_at, size)
    moov = next((b for b in boxes if b.type == "moov"), None)
    if moov is None:
        raise Mp4Error(
            "no moov box: this is not an MP4, or it was cut short before the moov (a plain MP4 whose "
            "recording was interrupted has none; record fragmented MP4 instead)"
        )
    if moov.size > _MAX_MOOV:
        raise Mp4Error(f"moov box of {moov.size} bytes exceeds the {_MAX_MOOV}-byte limit")
    movie = _parse_moov(_read(read_at, moov.offset, moov.size, "moov"), moov)
    video = movie.video
    fragments = _fragments(read_at, boxes, moov, movie)

    total_ticks = video.moov_ticks + sum(ticks for _, ticks, _ in fragments)
    total_samples = video.moov_samples + sum(samples for _, _, samples in fragments)
    if total_ticks == 0 and total_samples == 0 and not fragments and video.mdhd_duration > 0:
        # A plain MP4 whose stbl we could not count (e.g. an empty stts) still states its length.
        total_ticks = video.mdhd_duration
    if total_ticks <= 0:
        raise Mp4Error(
            "the video track holds no samples (an empty or truncated recording); there is nothing to play"
        )
    duration_s = total_ticks / video.timescale
    fps = round(total_samples / duration_s, 3) if total_samples else None
    return Mp4Info(
        duration_s=duration_s,
        width=video.width,
        height=video.height,
        fps=fps,
        codec=video.codec,
        init_size=moov.offset + moov.size,
        fragments=tuple(frag for frag, _, _ in fragments),
        timescale=video.timescale,
        size=size,
        audio_codec=movie.audio_codec,
    )


def find_uuid_box(read_at: ReadAt, size: int, uuid: bytes) -> bytes | None:
    """The payload of the top-level ``uuid`` box with this 16-byte id, or None (reads box headers only)."""
    if len(uuid) != 16:
        raise ValueError("a uuid box id is 16 bytes")
    for box in reversed(_top_level_boxes(read_at, size)):
        if box.type != "uuid":
            continue
        start = box.offset + box.header - 16
        if _read(read_at, start, 16, "uuid") == uuid:
            return _read(read_at, box.offset + box.header, box.size - box.header, "uuid box payload")
    return None


# --------------------------------------------------------------------------------------------- boxes


@dataclass(frozen=True)
class _TopBox:
    type: str
    offset: int
    size: int
    header: int


def _read(read_at: ReadAt, offset: int, length: int, what: str) -> bytes:
    data = read_at(offset, length)
    if len(data) != length:
        raise Mp4Error(
            f"short read of {what} at offset {offset}: wanted {length} bytes, got {len(data)}; "
            "the file is truncated or the reader is broken"
        )
    return bytes(data)


def _top_level_boxes(read_at: ReadAt, size: int) -> list[_TopBox]:
    boxes: list[_TopBox] = []
    offset = 0
    while offset < size:
        remaining = size - offset
        if remaining < 8:
            raise Mp4Error(f"{remaining} stray bytes after the last box at offset {offset}; file is damaged")
        head = _read(read_at, offset, min(16, remaining), "box header")
        box_size, raw_type = struct.unpack_from(">I4s", head, 0)
        box_type = raw_type.decode("latin-1")
        header = 8
        if box_size == 1:
            if len(head) < 16:
                raise Mp4Error(f"{box_type!r} box at offset {offset} declares a 64-bit size but is cut short")
            (box_size,) = struct.unpack_from(">Q", head, 8)
            header = 16
        elif box_size == 0:
            box_size = remaining
        if box_type == "uuid":
            header += 16
        if box_size < header:
            raise Mp4Error(f"{box_type!r} box at offset {offset} has impossible size {box_size}")
        if box_size > remaining:
            raise Mp4Error(
                f"{box_type!r} box at offset {offset} claims {box_size} bytes but only {remaining} remain; "
                "the file is truncated (an interrupted upload?)"
            )
        boxes.append(_TopBox(box_type, offset, box_size, header))
        offset += box_size
    return boxes


def _children(data: bytes, start: int, end: int, parent: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(type, payload_start, payload_end)`` for each box in ``data[start:end]``."""
    pos = start
    while pos < end:
        left = end - pos
        if left < 8:
            if not any(data[pos:end]):
                return  # QuickTime-style zero terminator
            raise Mp4Error(f"{left} stray bytes at the end of the {parent} box")
        box_size, raw_type = struct.unpack_from(">I4s", data, pos)
        box_type = raw_type.decode("latin-1")
        header = 8
        if box_size == 1:
            if left < 16:
                raise Mp4Error(f"{box_type!r} box inside {parent} is cut short")
            (box_size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif box_size == 0:
            box_size = left
        if box_type == "uuid":
            header += 16
        if box_size < header or box_size > left:
            raise Mp4Error(f"{box_type!r} box inside {parent} has size {box_size}, outside 0..{left}")
        yield box_type, pos + header, pos + box_size
        pos += box_size


class _Cursor:
    """Bounds-checked big-endian reads over ``data[pos:end]``; overruns become Mp4Error."""

    __slots__ = ("data", "end", "pos", "what")

    def __init__(self, data: bytes, pos: int, end: int, what: str) -> None:
        self.data, self.pos, self.end, self.what = data, pos, end, what

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise Mp4Error(f"{self.what} box is truncated: needs {n} more bytes, has {self.remaining}")

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def take(self, n: int) -> bytes:
        self.need(n)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def _unpack(self, fmt: str, n: int) -> int:
        self.need(n)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += n
        return int(value)

    def u8(self) -> int:
        return self._unpack(">B", 1)

    def u16(self) -> int:
        return self._unpack(">H", 2)

    def u32(self) -> int:
        return self._unpack(">I", 4)

    def u64(self) -> int:
        return self._unpack(">Q", 8)

    def full_box(self) -> tuple[int, int]:
        """Read a FullBox's version and 24-bit flags."""
        word = self.u32()
        return word >> 24, word & 0xFFFFFF


# ---------------------------------------------------------------------------------------------- moov


@dataclass
class _Track:
    track_id: int = 0
    handler: str = ""
    timescale: int = 0
    mdhd_duration: int = 0
    width: int = 0
    height: int = 0
    codec: str = ""
    moov_samples: int = 0
    moov_ticks: int = 0


@dataclass(frozen=True)
class _Trex:
    default_duration: int
    default_flags: int


@dataclass
class _Movie:
    video: _Track
    trex: dict[int, _Trex] = field(default_factory=dict)
    fragmented: bool = False
    audio_codec: str | None = None


def _parse_moov(data: bytes, box: _TopBox) -> _Movie:
    video: _Track | None = None
    trex: dict[int, _Trex] = {}
    fragmented = False
    audio: str | None = None
    for box_type, start, end in _children(data, box.header, len(data), "moov"):
        if box_type == "trak":
            track = _parse_trak(data, start, end)
            if track.handler == "vide" and video is None:
                video = track
            elif track.handler == "soun" and audio is None and track.codec == "mp4a":
                audio = "mp4a.40.2"        # AAC-LC: what the agent stores camera sound as
        elif box_type == "mvex":
            fragmented = True
            for sub_type, s, e in _children(data, start, end, "mvex"):
                if sub_type == "trex":
                    cur = _Cursor(data, s, e, "trex")
                    cur.full_box()
                    track_id = cur.u32()
                    cur.skip(4)  # default_sample_description_index
                    default_duration = cur.u32()
                    cur.skip(4)  # default_sample_size
                    trex[track_id] = _Trex(default_duration, cur.u32())
    if video is None:
        raise Mp4Error("the MP4 has no video track (no trak with a 'vide' handler)")
    if video.timescale <= 0:
        raise Mp4Error("the video track's mdhd timescale is 0; the file is damaged")
    if video.width <= 0 or video.height <= 0:
        raise Mp4Error("the video track states no frame size (neither in its sample entry nor in tkhd)")
    if not video.codec:
        raise Mp4Error("the video track has no sample description (stsd); cannot tell its codec")
    return _Movie(video, trex, fragmented, audio)


def _parse_trak(data: bytes, start: int, end: int) -> _Track:
    track = _Track()
    tkhd_size = (0, 0)
    for box_type, s, e in _children(data, start, end, "trak"):
        if box_type == "tkhd":
            cur = _Cursor(data, s, e, "tkhd")
            version, _ = cur.full_box()
            cur.skip(16 if version == 1 else 8)  # creation + modification time
            track.track_id = cur.u32()
            cur.skip(4 + (8 if version == 1 else 4))  # reserved + duration
            cur.skip(8 + 2 + 2 + 2 + 2 + 36)  # reserved, layer, group, volume, reserved, matrix
            tkhd_size = (cur.u32() >> 16, cur.u32() >> 16)
        elif box_type == "mdia":
            _parse_mdia(data, s, e, track)
    if track.width <= 0 or track.height <= 0:
        track.width, track.height = tkhd_size
    return track


def _parse_mdia(data: bytes, start: int, end: int, track: _Track) -> None:
    minf: tuple[int, int] | None = None
    for box_type, s, e in _children(data, start, end, "mdia"):
        if box_type == "mdhd":
            cur = _Cursor(data, s, e, "mdhd")
            version, _ = cur.full_box()
            if version == 1:
                cur.skip(16)
                track.timescale = cur.u32()
                track.mdhd_duration = cur.u64()
            else:
                cur.skip(8)
                track.timescale = cur.u32()
                track.mdhd_duration = cur.u32()
        elif box_type == "hdlr":
            cur = _Cursor(data, s, e, "hdlr")
            cur.skip(8)  # version/flags + pre_defined
            track.handler = cur.take(4).decode("latin-1")
        elif box_type == "minf":
            minf = (s, e)
    # Only a video track's sample entry has the visual layout parsed below; the handler (hdlr) decides,
    # and it is read first whatever the box order.
    if minf is not None and track.handler == "vide":
        for sub_type, ms, me in _children(data, minf[0], minf[1], "minf"):
            if sub_type == "stbl":
                _parse_stbl(data, ms, me, track)
    elif minf is not None and track.handler == "soun":
        track.codec = _sound_entry_type(data, minf)


def _sound_entry_type(data: bytes, minf: tuple[int, int]) -> str:
    """The first sample entry's four-character type of a sound track (``mp4a`` for AAC), or ''."""
    for sub_type, ms, me in _children(data, minf[0], minf[1], "minf"):
        if sub_type != "stbl":
            continue
        for box_type, s, e in _children(data, ms, me, "stbl"):
            if box_type == "stsd":
                cur = _Cursor(data, s, e, "stsd")
                cur.full_box()
                if cur.u32() == 0:
                    return ""
                for entry_type, _, _ in _children(data, cur.pos, e, "stsd"):
                    return entry_type
    return ""


def _parse_stbl(data: bytes, start: int, end: int, track: _Track) -> None:
    for box_type, s, e in _children(data, start, end, "stbl"):
        if box_type == "stsd":
            cur = _Cursor(data, s, e, "stsd")
            cur.full_box()
            if cur.u32() == 0:
                continue
            for entry_type, es, ee in _children(data, cur.pos, e, "stsd"):
                _parse_sample_entry(data, entry_type, es, ee, track)
                break
        elif box_type == "stts":
            cur = _Cursor(data, s, e, "stts")
            cur.full_box()
            count = cur.u32()
            cur.need(count * 8)
            samples = ticks = 0
            for _ in range(count):
                n, delta = cur.u32(), cur.u32()
                samples += n
                ticks += n * delta
            track.moov_samples, track.moov_ticks = samples, ticks


def _parse_sample_entry(data: bytes, entry_type: str, start: int, end: int, track: _Track) -> None:
    cur = _Cursor(data, start, end, entry_type)
    cur.skip(6 + 2 + 16)  # reserved, data_reference_index, pre_defined/reserved
    track.width, track.height = cur.u16(), cur.u16()
    cur.skip(4 + 4 + 4 + 2 + 32 + 2 + 2)  # resolutions, reserved, frame_count, compressor, depth, -1
    track.codec = entry_type
    for box_type, s, e in _children(data, cur.pos, end, entry_type):
        if box_type == "avcC" and entry_type in ("avc1", "avc3"):
            avc = _Cursor(data, s, e, "avcC")
            avc.skip(1)  # configurationVersion
            profile, compat, level = avc.u8(), avc.u8(), avc.u8()
            track.codec = f"{entry_type}.{profile:02x}{compat:02x}{level:02x}"
        elif box_type == "hvcC" and entry_type in ("hvc1", "hev1"):
            track.codec = _hevc_codec(entry_type, _Cursor(data, s, e, "hvcC"))


def _hevc_codec(entry_type: str, cur: _Cursor) -> str:
    """RFC 6381 / ISO 14496-15 Annex E string such as ``hvc1.1.6.L93.B0``."""
    cur.skip(1)
    first = cur.u8()
    space, tier, profile = first >> 6, (first >> 5) & 1, first & 0x1F
    compat = cur.u32()
    constraints = cur.take(6)
    level = cur.u8()
    reversed_compat = int(f"{compat:032b}"[::-1], 2)
    parts = [
        entry_type,
        f"{'' if space == 0 else 'ABC'[space - 1]}{profile}",
        f"{reversed_compat:X}",
        f"{'H' if tier else 'L'}{level}",
    ]
    kept = constraints.rstrip(b"\x00")
    parts.extend(f"{byte:X}" for byte in kept)
    return ".".join(parts)


# --------------------------------------------------------------------------------------------- moofs


def _fragments(
    read_at: ReadAt, boxes: list[_TopBox], moov: _TopBox, movie: _Movie
) -> list[tuple[Fragment, int, int]]:
    """Return ``(fragment, duration_ticks, samples)`` for every moof that carries video."""
    spans: list[tuple[_TopBox, int]] = []  # (moof, end offset of its last mdat)
    pending: _TopBox | None = None
    pending_end = 0
    for box in boxes:
        if box.type == "moof":
            if box.offset < moov.offset:
                raise Mp4Error(f"moof at offset {box.offset} comes before the moov; the init segment must be first")
            if pending is not None:
                spans.append((pending, _require_mdat(pending, pending_end)))
            pending, pending_end = box, 0
        elif box.type == "mdat" and pending is not None:
            pending_end = box.offset + box.size
    if pending is not None:
        spans.append((pending, _require_mdat(pending, pending_end)))
    if spans and not movie.fragmented:
        raise Mp4Error("the file has moof boxes but its moov has no mvex; it is not a valid fragmented MP4")

    video = movie.video
    result: list[tuple[Fragment, int, int]] = []
    decode_time = video.moov_ticks
    for moof, end in spans:
        if moof.size > _MAX_MOOF:
            raise Mp4Error(f"moof at offset {moof.offset} is {moof.size} bytes, over the {_MAX_MOOF}-byte limit")
        run = _parse_moof(_read(read_at, moof.offset, moof.size, "moof"), moof, movie)
        if run is None:
            continue
        if run.base_time is not None:
            decode_time = run.base_time
        fragment = Fragment(
            offset=moof.offset,
            size=end - moof.offset,
            start_s=decode_time / video.timescale,
            duration_s=run.ticks / video.timescale,
            keyframe=run.first_flags is not None and not run.first_flags & _SAMPLE_IS_NON_SYNC,
        )
        result.append((fragment, run.ticks, run.samples))
        decode_time += run.ticks
    return result


def _require_mdat(moof: _TopBox, end: int) -> int:
    if end == 0:
        raise Mp4Error(f"moof at offset {moof.offset} is not followed by an mdat; the fragment has no media")
    return end


@dataclass
class _Run:
    ticks: int = 0
    samples: int = 0
    first_flags: int | None = None
    base_time: int | None = None


def _parse_moof(data: bytes, box: _TopBox, movie: _Movie) -> _Run | None:
    run: _Run | None = None
    video_id = movie.video.track_id
    for box_type, start, end in _children(data, box.header, len(data), "moof"):
        if box_type != "traf":
            continue
        traf = _parse_traf(data, start, end, video_id, movie.trex.get(video_id))
        if traf is None:
            continue
        if run is None:
            run = traf
        else:
            run.ticks += traf.ticks
            run.samples += traf.samples
            if run.first_flags is None:
                run.first_flags = traf.first_flags
    return run


def _parse_traf(data: bytes, start: int, end: int, video_id: int, trex: _Trex | None) -> _Run | None:
    run = _Run()
    default_duration = trex.default_duration if trex else None
    default_flags = trex.default_flags if trex else None
    seen_tfhd = False
    for box_type, s, e in _children(data, start, end, "traf"):
        if box_type == "tfhd":
            cur = _Cursor(data, s, e, "tfhd")
            _, flags = cur.full_box()
            if cur.u32() != video_id:
                return None
            seen_tfhd = True
            if flags & _TFHD_BASE_DATA_OFFSET:
                cur.skip(8)
            if flags & _TFHD_SAMPLE_DESCRIPTION:
                cur.skip(4)
            if flags & _TFHD_DEFAULT_DURATION:
                default_duration = cur.u32()
            if flags & _TFHD_DEFAULT_SIZE:
                cur.skip(4)
            if flags & _TFHD_DEFAULT_FLAGS:
                default_flags = cur.u32()
            if flags & _TFHD_DURATION_IS_EMPTY:
                return run
        elif not seen_tfhd:
            if box_type in ("tfdt", "trun"):
                raise Mp4Error(f"{box_type} before tfhd in a traf; the fragment is malformed")
        elif box_type == "tfdt":
            cur = _Cursor(data, s, e, "tfdt")
            version, _ = cur.full_box()
            run.base_time = cur.u64() if version == 1 else cur.u32()
        elif box_type == "trun":
            _add_trun(_Cursor(data, s, e, "trun"), run, default_duration, default_flags)
    if not seen_tfhd:
        raise Mp4Error("a traf has no tfhd; cannot tell which track it belongs to")
    return run


def _add_trun(cur: _Cursor, run: _Run, default_duration: int | None, default_flags: int | None) -> None:
    _, flags = cur.full_box()
    count = cur.u32()
    if flags & _TRUN_DATA_OFFSET:
        cur.skip(4)
    first_flags: int | None = cur.u32() if flags & _TRUN_FIRST_FLAGS else None
    fields = [bit for bit in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO) if flags & bit]
    cur.need(count * 4 * len(fields))
    if count == 0:
        return
    if not flags & _TRUN_DURATION and default_duration is None:
        raise Mp4Error("trun samples have no duration and neither tfhd nor trex gives a default one")
    if not flags & _TRUN_DURATION:
        assert default_duration is not None
        run.ticks += count * default_duration
    stride = 4 * len(fields)
    base = cur.pos
    if flags & _TRUN_DURATION:
        run.ticks += sum(
            struct.unpack_from(">I", cur.data, base + i * stride)[0] for i in range(count)
        )
    if first_flags is None and flags & _TRUN_FLAGS:
        position = fields.index(_TRUN_FLAGS)
        (first_flags,) = struct.unpack_from(">I", cur.data, base + 4 * position)
    if first_flags is None:
        first_flags = default_flags
    if first_flags is None:
        raise Mp4Error("cannot tell whether the fragment starts with a keyframe: no sample flags and no trex")
    if run.samples == 0:
        run.first_flags = first_flags
    run.samples += count
