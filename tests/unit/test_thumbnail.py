"""Functional tests for thumbnails: real ffmpeg seeking and scaling, checked by decoding the JPEG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cryospy.common.ffmpeg_tool import FfmpegError
from cryospy.edge_agent.encoder import ClipEncoder, EncodeSettings
from cryospy.edge_agent.synthetic import SyntheticScene
from cryospy.functions.clips.mp4 import parse_mp4_file
from cryospy.functions.clips.thumbnail import make_thumbnail, thumbnail_from_fragment

FPS = 10
SCENE = SyntheticScene(width=640, height=360, fps=FPS, seed=5, crossing_seconds=2.0)


def _write(path: Path, scene: SyntheticScene, frames: int) -> Path:
    with ClipEncoder(path, EncodeSettings(width=scene.width, height=scene.height, fps=scene.fps)) as enc:
        for i in range(frames):
            enc.write(scene.frame(i))
    return path


def _jpeg(data: bytes) -> np.ndarray:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a complete JPEG"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("thumb") / "wide.mp4", SCENE, 2 * FPS)


def test_fits_the_box_keeping_aspect(clip: Path) -> None:
    image = _jpeg(make_thumbnail(clip, at_seconds=0.5))
    assert image.shape == (270, 480, 3)  # 16:9 inside 480x360


def test_picks_the_requested_moment(clip: Path) -> None:
    for index in (3, 14):
        thumb = _jpeg(make_thumbnail(clip, at_seconds=index / FPS))
        distances = [
            float(np.abs(cv2.resize(SCENE.frame(i), (480, 270), interpolation=cv2.INTER_AREA).astype(np.int16)
                         - thumb.astype(np.int16)).mean())
            for i in range(2 * FPS)
        ]
        assert abs(int(np.argmin(distances)) - index) <= 1


def test_time_is_clamped_into_the_clip(clip: Path) -> None:
    last = _jpeg(make_thumbnail(clip, at_seconds=1000))
    first = _jpeg(make_thumbnail(clip, at_seconds=-5))
    assert last.shape == first.shape == (270, 480, 3)
    assert float(np.abs(last.astype(np.int16) - first.astype(np.int16)).mean()) > 1  # different frames


def test_portrait_and_small_clips(tmp_path: Path) -> None:
    tall = _write(tmp_path / "tall.mp4", SyntheticScene(width=180, height=320, fps=FPS), 3)
    image = _jpeg(make_thumbnail(tall, at_seconds=0, max_width=480, max_height=160))
    height, width = image.shape[:2]
    assert height <= 160 and width % 2 == 0 and height % 2 == 0
    assert width / height == pytest.approx(180 / 320, rel=0.05)
    small = _write(tmp_path / "small.mp4", SyntheticScene(width=160, height=96, fps=FPS), 3)
    assert _jpeg(make_thumbnail(small, at_seconds=0)).shape == (96, 160, 3)  # never enlarged


def test_quality_trades_size(clip: Path) -> None:
    low = make_thumbnail(clip, at_seconds=1, quality=10)
    high = make_thumbnail(clip, at_seconds=1, quality=95)
    assert len(low) < len(high)
    with pytest.raises(ValueError, match="quality"):
        make_thumbnail(clip, at_seconds=1, quality=0)


def test_broken_files_raise_ffmpeg_error(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(FfmpegError, match="does not exist"):
        make_thumbnail(tmp_path / "missing.mp4", at_seconds=0)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(FfmpegError, match="not a playable MP4"):
        make_thumbnail(garbage, at_seconds=0)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:-100])
    with pytest.raises(FfmpegError, match="truncated"):
        make_thumbnail(truncated, at_seconds=0)
    # Boxes intact, media destroyed: only ffmpeg can tell, and its own words reach the message.
    data = bytearray(clip.read_bytes())
    for fragment in parse_mp4_file(clip).fragments:
        moof_size = int.from_bytes(data[fragment.offset : fragment.offset + 4], "big")
        media = fragment.offset + moof_size + 8
        data[media : fragment.offset + fragment.size] = bytes(fragment.offset + fragment.size - media)
    zeroed = tmp_path / "zeroed.mp4"
    zeroed.write_bytes(bytes(data))
    with pytest.raises(FfmpegError, match="ffmpeg said"):
        make_thumbnail(zeroed, at_seconds=0.5)


def _fragment_of(clip: Path, at_seconds: float) -> tuple[bytes, bytes, float]:
    """The init segment, the fragment holding ``at_seconds`` and the offset into it, as ingest picks them."""
    data, info = clip.read_bytes(), parse_mp4_file(clip)
    frag = next(f for f in reversed(info.fragments) if f.start_s <= at_seconds)
    return data[:info.init_size], data[frag.offset:frag.offset + frag.size], at_seconds - frag.start_s


def test_from_a_fragment_in_memory_fits_the_box_and_picks_the_moment(clip: Path) -> None:
    for index in (3, 14):
        init, body, offset = _fragment_of(clip, index / FPS)
        thumb = _jpeg(thumbnail_from_fragment(init, body, offset_s=offset))
        assert thumb.shape == (270, 480, 3)
        distances = [
            float(np.abs(cv2.resize(SCENE.frame(i), (480, 270), interpolation=cv2.INTER_AREA).astype(np.int16)
                         - thumb.astype(np.int16)).mean())
            for i in range(2 * FPS)
        ]
        assert abs(int(np.argmin(distances)) - index) <= 1


def test_from_a_fragment_past_its_end_gives_its_last_frame_and_small_clips_stay_small(clip: Path,
                                                                                       tmp_path: Path) -> None:
    init, body, _ = _fragment_of(clip, 0.0)
    assert _jpeg(thumbnail_from_fragment(init, body, offset_s=99)).shape == (270, 480, 3)
    small = _write(tmp_path / "small.mp4", SyntheticScene(width=160, height=96, fps=FPS, seed=1), FPS)
    init, body, _ = _fragment_of(small, 0.0)
    assert _jpeg(thumbnail_from_fragment(init, body, offset_s=0)).shape == (96, 160, 3)


def test_from_a_fragment_refuses_what_is_not_video(clip: Path) -> None:
    init, body, _ = _fragment_of(clip, 0.0)
    with pytest.raises(FfmpegError, match="empty"):
        thumbnail_from_fragment(b"", body, offset_s=0)
    with pytest.raises(FfmpegError):
        thumbnail_from_fragment(init, b"\x00" * 4096, offset_s=0)
    with pytest.raises(ValueError, match="quality"):
        thumbnail_from_fragment(init, body, offset_s=0, quality=0)
