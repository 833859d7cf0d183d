"""Tests for the pure-Python MP4 indexer.

Two kinds of input: real clips from :class:`ClipEncoder` checked against independent decoders (OpenCV and
ffmpeg), and small hand-built files that exercise what ffmpeg never writes (trex/tfhd defaults, missing
tfdt, non-keyframe fragments, 64-bit and to-the-end box sizes, extra tracks, HEVC). Finally a fuzz
loop mutates both thousands of times: the only exception allowed out is Mp4Error.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import ffmpeg
import pytest

from cryospy.common.ffmpeg_tool import run_ffmpeg
from cryospy.edge_agent.encoder import ClipEncoder, EncodeSettings
from cryospy.edge_agent.synthetic import SyntheticScene
from cryospy.functions.clips.mp4 import Mp4Error, Mp4Info, parse_mp4, parse_mp4_file

W, H, FPS, FRAMES = 160, 96, 15, 45


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    scene = SyntheticScene(width=W, height=H, fps=FPS, seed=11)
    with ClipEncoder(path, EncodeSettings(width=W, height=H, fps=FPS)) as enc:
        for i in range(FRAMES):
            enc.write(scene.frame(i))
    return path


def _parse_bytes(data: bytes) -> Mp4Info:
    return parse_mp4(lambda offset, length: data[offset : offset + length], len(data))


def _decode_gray(mp4: bytes) -> list[bytes]:
    """Decode MP4 bytes piped into ffmpeg; return each frame as raw 8-bit grey."""
    raw = run_ffmpeg(
        ffmpeg.input("pipe:0").output("pipe:1", f="rawvideo", pix_fmt="gray").global_args("-v", "error"),
        what="decoding a byte range",
        stdin=mp4,
    )
    assert len(raw) % (W * H) == 0
    return [raw[i : i + W * H] for i in range(0, len(raw), W * H)]


# ------------------------------------------------------------------------------------- real clips


def test_matches_what_opencv_reports(clip: Path) -> None:
    info = parse_mp4_file(clip)
    cap = cv2.VideoCapture(str(clip))
    try:
        cv_frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        cv_fps = cap.get(cv2.CAP_PROP_FPS)
        cv_size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    assert (info.width, info.height) == cv_size == (W, H)
    assert info.fps == pytest.approx(cv_fps) == FPS
    assert info.duration_s == pytest.approx(cv_frames / cv_fps) == FRAMES / FPS
    assert info.size == clip.stat().st_size
    assert info.timescale > 0
    assert info.codec.startswith("avc1.") and len(info.codec) == len("avc1.4d401e")


def test_fragments_tile_the_file_after_the_init_segment(clip: Path) -> None:
    info = parse_mp4_file(clip)
    assert len(info.fragments) >= FRAMES / FPS
    assert info.fragments[0].offset == info.init_size
    for before, after in zip(info.fragments, info.fragments[1:], strict=False):
        assert after.offset == before.offset + before.size
        assert after.start_s == pytest.approx(before.start_s + before.duration_s)
    assert info.init_size + sum(f.size for f in info.fragments) == info.size
    assert all(f.keyframe for f in info.fragments)
    assert info.fragments[0].start_s == 0.0
    assert sum(f.duration_s for f in info.fragments) == pytest.approx(info.duration_s)


def test_init_plus_any_fragment_decodes_on_its_own(clip: Path) -> None:
    data = clip.read_bytes()
    info = _parse_bytes(data)
    whole = _decode_gray(data)
    assert len(whole) == FRAMES
    init = data[: info.init_size]
    first = 0
    for fragment in info.fragments:
        frames = _decode_gray(init + data[fragment.offset : fragment.offset + fragment.size])
        expected = round(fragment.duration_s * FPS)
        assert len(frames) == expected
        # Bit-identical to decoding the whole file: the fragment needs nothing from before it.
        assert frames == whole[first : first + expected]
        first += expected


def test_reads_only_headers_and_small_boxes(clip: Path) -> None:
    data = clip.read_bytes()
    calls: list[tuple[int, int]] = []

    def read_at(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return data[offset : offset + length]

    info = parse_mp4(read_at, len(data))
    read_bytes = sum(length for _, length in calls)
    assert read_bytes < len(data) / 5
    mdat_payloads = [(f.offset, f.offset + f.size) for f in info.fragments]
    # No read reaches into media bytes beyond a 16-byte header probe (room for a 64-bit size).
    for offset, length in calls:
        for start, end in mdat_payloads:
            moof_size = struct.unpack_from(">I", data, start)[0]
            media_start = start + moof_size + 8
            assert offset + length <= media_start + 8 or offset >= end


def test_plain_mp4_with_moov_first_or_last(clip: Path, tmp_path: Path) -> None:
    fast = tmp_path / "faststart.mp4"
    late = tmp_path / "moov_last.mp4"
    run_ffmpeg(ffmpeg.input(str(clip)).output(str(fast), c="copy", movflags="+faststart").global_args("-v", "error"),
               what="remux with faststart")
    run_ffmpeg(ffmpeg.input(str(clip)).output(str(late), c="copy").global_args("-v", "error"), what="remux")
    for path in (fast, late):
        info = parse_mp4_file(path)
        assert info.fragments == ()
        assert info.duration_s == pytest.approx(FRAMES / FPS)
        assert (info.width, info.height, info.fps) == (W, H, FPS)
        assert info.codec == parse_mp4_file(clip).codec


def test_file_errors_are_mp4_errors(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(Mp4Error, match="cannot open"):
        parse_mp4_file(tmp_path / "missing.mp4")
    data = clip.read_bytes()
    with pytest.raises(Mp4Error, match="truncated"):
        _parse_bytes(data[:-10])
    with pytest.raises(Mp4Error, match="too small"):
        _parse_bytes(b"\x00\x00")
    with pytest.raises(Mp4Error, match="no moov"):
        _parse_bytes(struct.pack(">I4s", 16, b"ftyp") + b"isom" + bytes(4))
    with pytest.raises(Mp4Error, match="short read"):
        parse_mp4(lambda offset, length: data[offset : offset + length][:-1], len(data))
    init_only = data[: parse_mp4_file(clip).init_size]
    with pytest.raises(Mp4Error, match="no samples"):
        _parse_bytes(init_only)


# ------------------------------------------------------------------------------- hand-built files


def box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *parts)


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def visual_entry(fourcc: bytes, width: int, height: int, *children: bytes) -> bytes:
    return box(fourcc, bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
               u32(0x480000, 0x480000), bytes(4), struct.pack(">H", 1), bytes(32), struct.pack(">Hh", 24, -1),
               *children)


def trak(track_id: int, handler: bytes, timescale: int, entry: bytes, stts: Sequence[tuple[int, int]] = ()) -> bytes:
    tkhd = full(b"tkhd", 0, 3, bytes(8), u32(track_id), bytes(8), bytes(52), u32(1280 << 16, 720 << 16))
    mdhd = full(b"mdhd", 0, 0, bytes(8), u32(timescale, sum(n * d for n, d in stts)), bytes(4))
    hdlr = full(b"hdlr", 0, 0, bytes(4), handler, bytes(12), b"x\x00")
    stsd = full(b"stsd", 0, 0, u32(1), entry)
    stts_box = full(b"stts", 0, 0, u32(len(stts)), *(u32(n, d) for n, d in stts))
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", box(b"stbl", stsd, stts_box))))


AVC = visual_entry(b"avc1", 1280, 720, box(b"avcC", bytes([1, 0x64, 0x00, 0x1F, 0xFF]) + bytes(6)))
AUDIO = box(b"mp4a", bytes(28))
SYNC, NON_SYNC = 0x02000000, 0x01010000


def movie(
    video_entry: bytes = AVC, *, mvex: bool = True, audio: bool = True, stts: Sequence[tuple[int, int]] = ()
) -> bytes:
    traks = [trak(2, b"vide", 30000, video_entry, stts)]
    if audio:
        traks.insert(0, trak(1, b"soun", 48000, AUDIO))
    parts = [full(b"mvhd", 0, 0, bytes(8), u32(1000, 0), bytes(80)), *traks]
    if mvex:
        parts.append(box(b"mvex", full(b"trex", 0, 0, u32(1, 1, 1024, 0, 0)),
                         full(b"trex", 0, 0, u32(2, 1, 1000, 0, NON_SYNC))))
    return box(b"ftyp", b"iso6", u32(0), b"iso6mp41") + box(b"moov", *parts)


def fragmented_sample() -> tuple[bytes, list[int]]:
    """An fMP4 with an audio track, defaults from tfhd and trex, and odd box sizes; plus moof offsets."""
    out = bytearray(movie())
    offsets = []
    # 1: audio traf first; video duration from tfhd, keyframe from first_sample_flags, tfdt version 1.
    offsets.append(len(out))
    out += box(b"moof", full(b"mfhd", 0, 0, u32(1)),
               box(b"traf", full(b"tfhd", 0, 0x020000, u32(1)), full(b"trun", 0, 0x100, u32(2, 1024, 1024))),
               box(b"traf", full(b"tfhd", 0, 0x020008, u32(2, 1000)), full(b"tfdt", 1, 0, struct.pack(">Q", 9_000_000)),
                   full(b"trun", 0, 0x4, u32(30, SYNC))))
    out += box(b"mdat", bytes(100))
    # 2: no tfdt, durations and (non-sync) flags from trex; a free box and a 64-bit mdat.
    offsets.append(len(out))
    out += box(b"moof", full(b"mfhd", 0, 0, u32(2)),
               box(b"traf", full(b"tfhd", 0, 0, u32(2)), full(b"trun", 0, 0, u32(15))))
    out += box(b"free", bytes(3))
    out += struct.pack(">I4sQ", 1, b"mdat", 16 + 50) + bytes(50)
    # 3: per-sample durations and flags; the last mdat runs to the end of the file (size 0).
    offsets.append(len(out))
    out += box(b"moof", full(b"mfhd", 0, 0, u32(3)),
               box(b"traf", full(b"tfhd", 0, 0x020000, u32(2)),
                   full(b"trun", 0, 0x501, u32(2, 0, 2000, SYNC, 1000, NON_SYNC))))
    out += struct.pack(">I4s", 0, b"mdat") + bytes(40)
    return bytes(out), offsets


def test_hand_built_fragmented_file() -> None:
    data, offsets = fragmented_sample()
    info = _parse_bytes(data)
    assert info.codec == "avc1.64001f"
    assert (info.width, info.height, info.timescale, info.size) == (1280, 720, 30000, len(data))
    assert info.init_size == offsets[0]
    assert [f.offset for f in info.fragments] == offsets
    assert [f.keyframe for f in info.fragments] == [True, False, True]
    assert [f.start_s for f in info.fragments] == pytest.approx([300.0, 301.0, 301.5])
    assert [f.duration_s for f in info.fragments] == pytest.approx([1.0, 0.5, 0.1])
    assert info.duration_s == pytest.approx(1.6)
    assert info.fps == pytest.approx(47 / 1.6, abs=0.001)
    assert info.fragments[-1].offset + info.fragments[-1].size == len(data)
    # Fragment 2 spans its moof, the free box and the 64-bit mdat.
    assert info.fragments[1].offset + info.fragments[1].size == offsets[2]


def test_hevc_codec_string_and_tkhd_fallback() -> None:
    hvcc = box(b"hvcC", bytes([1, 0x01]) + u32(0x60000000) + bytes([0xB0, 0, 0, 0, 0, 0]) + bytes([93]) + bytes(10))
    data = movie(visual_entry(b"hvc1", 0, 0, hvcc), mvex=False, audio=False, stts=[(90, 1000)])
    info = _parse_bytes(data)
    assert info.codec == "hvc1.1.6.L93.B0"
    assert (info.width, info.height) == (1280, 720)  # sample entry said 0x0; tkhd knows
    assert info.fragments == () and info.duration_s == pytest.approx(3.0) and info.fps == 30.0


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d.replace(b"vide", b"text"), "no video track"),
        (lambda d: d.replace(b"mvex", b"skip"), "no mvex"),
        (lambda d: d.replace(u32(2, 1, 1000, 0, NON_SYNC), u32(9, 1, 1000, 0, NON_SYNC)), "no duration"),
        (lambda d: d.replace(u32(30000, 0), u32(0, 0)), "timescale"),
        (lambda d: d.replace(b"moov", b"moox"), "no moov"),
    ],
)
def test_hand_built_defects(mangle: Callable[[bytes], bytes], message: str) -> None:
    data, _ = fragmented_sample()
    with pytest.raises(Mp4Error, match=message):
        _parse_bytes(mangle(data))


# ------------------------------------------------------------------------------------------- fuzz


def _mutate(rng: random.Random, data: bytes, hot: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        start, end = rng.choice(hot) if rng.random() < 0.8 else (0, len(out))
        end = min(end, len(out))
        if end <= start:
            continue
        pos = rng.randrange(start, end)
        action = rng.random()
        if action < 0.4:
            out[pos] ^= 1 << rng.randrange(8)
        elif action < 0.7:
            value = rng.choice([0, 1, 7, 8, 16, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32), len(out) - pos])
            out[pos : pos + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")
        elif action < 0.85:
            del out[pos : pos + rng.randint(1, 16)]
        else:
            out[pos:pos] = rng.randbytes(rng.randint(1, 16))
    if rng.random() < 0.1:
        del out[rng.randrange(len(out)) :]
    return bytes(out)


def test_fuzzed_input_raises_only_mp4_error(clip: Path) -> None:
    rng = random.Random(20240101)
    real = clip.read_bytes()
    real_info = _parse_bytes(real)
    real_hot = [(0, real_info.init_size)] + [(f.offset, f.offset + 200) for f in real_info.fragments]
    built, _ = fragmented_sample()
    built_hot = [(0, len(built))]
    parsed = failed = 0
    for i in range(3000):
        base, hot = (real, real_hot) if i % 2 else (built, built_hot)
        data = _mutate(rng, base, hot)
        try:
            info = _parse_bytes(data)
        except Mp4Error:
            failed += 1
            continue
        parsed += 1
        assert info.size == len(data) and info.duration_s > 0 and info.width > 0 and info.height > 0
        for fragment in info.fragments:
            assert info.init_size <= fragment.offset and fragment.offset + fragment.size <= len(data)
    # Both outcomes happen: the fuzzer reaches deep into the parser, not just the first check.
    assert parsed > 100 and failed > 100, (parsed, failed)
