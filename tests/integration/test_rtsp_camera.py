"""The test RTSP camera itself: every mount streams its file's own packets, auth is enforced, outages are real.

ffmpeg (the client the edge agent uses) records each mount over RTSP/TCP with ``-c copy``; PyAV then checks
the recording's codec and size, and that its packets are the served file's packets in order, across the
server's loop point, with timestamps that keep the file's frame rate.
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest

from cryospy.common.ffmpeg_tool import ffmpeg_exe
from tests.rtsp_camera.fixture import RtspCamera
from tests.rtsp_camera.media import AAC_FRAME, AAC_RATE
from tests.rtsp_camera.packets import find_in_loop, packet_digests

pytestmark = pytest.mark.integration

CODEC_NAMES = {"h264": "h264", "h265": "hevc", "mjpeg": "mjpeg"}
ALL_MOUNTS = ["main", "sub", "main_h265", "main_aac", "still", "still_sub", "sub_4x3", "mjpeg", "audio_only"]
SHORT_SECONDS = 3.0
LOOP_MOUNT = "main_aac"  # recorded past the loop point: video and audio must both wrap cleanly


def record(url: str, out: Path, seconds: float, *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``ffmpeg -rtsp_transport tcp -i URL -t SECONDS -map 0 -c copy OUT`` (Matroska keeps every stream)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-y", "-rtsp_transport", "tcp",
           "-timeout", "5000000", "-i", url, "-t", str(seconds), "-map", "0", "-c", "copy", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def recordings(rtsp_camera: RtspCamera, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every mount recorded at once (3 s each; the loop mount for one loop plus 2 s)."""
    folder = tmp_path_factory.mktemp("rtsp-recordings")

    def one(mount: str) -> tuple[str, Path]:
        seconds = rtsp_camera.media[mount].duration + 2 if mount == LOOP_MOUNT else SHORT_SECONDS
        out = folder / f"{mount}.mkv"
        done = record(rtsp_camera.url(mount), out, seconds)
        assert done.returncode == 0, f"ffmpeg could not record {mount}:\n{done.stderr[-2000:]}"
        return mount, out

    with ThreadPoolExecutor(len(rtsp_camera.mounts)) as pool:
        return dict(pool.map(one, rtsp_camera.mounts))


@pytest.mark.parametrize("mount", ALL_MOUNTS)
def test_mount_streams_its_codec_and_size(rtsp_camera: RtspCamera, recordings: dict[str, Path], mount: str) -> None:
    media = rtsp_camera.media[mount]
    with av.open(str(recordings[mount])) as container:
        if media.video is None:
            assert not container.streams.video, f"{mount} is audio only"
        else:
            video = container.streams.video[0].codec_context
            assert (video.name, video.width, video.height) == (CODEC_NAMES[media.video], media.width, media.height)
        audio = [stream.codec_context.name for stream in container.streams.audio]
        assert audio == (["aac"] if media.audio == "aac" else [])


# Not mjpeg: RTP/JPEG rebuilds each picture's headers, so its packets are the file's pictures, not its bytes.
@pytest.mark.parametrize("mount", [m for m in ALL_MOUNTS if m != "mjpeg"])
def test_recorded_packets_are_the_files_packets(rtsp_camera: RtspCamera, recordings: dict[str, Path],
                                                mount: str) -> None:
    media = rtsp_camera.media[mount]
    kinds = (["video"] if media.video else []) + (["audio"] if media.audio else [])
    for kind in kinds:
        recorded = packet_digests(recordings[mount], kind)
        served = packet_digests(media.path, kind)
        find_in_loop(recorded, served)  # raises, naming the first packet that differs
        wanted = SHORT_SECONDS * media.fps if kind == "video" else 0
        assert len(recorded) >= wanted * 0.8, f"{mount}: only {len(recorded)} {kind} packets in {SHORT_SECONDS} s"


def test_the_loop_point_keeps_packets_and_pace(rtsp_camera: RtspCamera, recordings: dict[str, Path]) -> None:
    """Past the end of the file the server starts it again: same bytes, and PTS keep their spacing."""
    media = rtsp_camera.media[LOOP_MOUNT]
    for kind in ("video", "audio"):
        recorded = packet_digests(recordings[LOOP_MOUNT], kind)
        served = packet_digests(media.path, kind)
        start = find_in_loop(recorded, served)
        assert start + len(recorded) > len(served), f"the {kind} recording did not reach the loop point"
        pts = [p.pts for p in recorded[1:]]  # ffmpeg may leave the very first packet's timestamp unset
        assert all(t is not None for t in pts)
        steps = [b - a for a, b in itertools.pairwise(pts)]  # type: ignore[operator]
        frame = 1 / media.fps if kind == "video" else AAC_FRAME / AAC_RATE
        assert max(steps) < frame * 1.5 and min(steps) > frame * 0.5, f"{kind} PTS steps {sorted(set(steps))}"


def test_the_mjpeg_mount_sends_the_files_pictures(rtsp_camera: RtspCamera, recordings: dict[str, Path]) -> None:
    """RTP/JPEG rebuilds each picture's headers from RFC 2435's defaults: decoded, every picture is the file's."""
    def pictures(path: Path) -> list[str]:
        with av.open(str(path)) as container:
            return [hashlib.sha256(frame.to_ndarray().tobytes()).hexdigest() for frame in container.decode(video=0)]

    recorded, served = pictures(recordings["mjpeg"]), set(pictures(rtsp_camera.media_path("mjpeg")))
    assert len(recorded) >= SHORT_SECONDS * rtsp_camera.media["mjpeg"].fps * 0.8
    assert not [i for i, digest in enumerate(recorded) if digest not in served], "pictures the file does not hold"


@pytest.mark.parametrize("credentials", ["wrong", "none"])
def test_a_wrong_or_missing_password_gets_401(rtsp_camera: RtspCamera, tmp_path: Path, credentials: str) -> None:
    url = rtsp_camera.url("main", with_credentials=False)
    if credentials == "wrong":
        url = url.replace("rtsp://", f"rtsp://{rtsp_camera.username}:not-{rtsp_camera.password}@")
    done = record(url, tmp_path / "refused.mkv", 1)
    assert done.returncode != 0
    assert "401 Unauthorized" in done.stderr, done.stderr[-2000:]


def test_stop_refuses_and_start_serves_again_on_the_same_port(rtsp_camera: RtspCamera, tmp_path: Path) -> None:
    url = rtsp_camera.url("sub")
    with rtsp_camera.outage():
        assert not rtsp_camera.running
        done = record(url, tmp_path / "down.mkv", 1)
        assert done.returncode != 0
        assert "Connection refused" in done.stderr, done.stderr[-2000:]
    assert rtsp_camera.url("sub") == url
    done = record(url, tmp_path / "up.mkv", 1)
    assert done.returncode == 0, done.stderr[-2000:]
    find_in_loop(packet_digests(tmp_path / "up.mkv"), packet_digests(rtsp_camera.media_path("sub")))


def test_the_dead_url_refuses_connections(rtsp_camera: RtspCamera, tmp_path: Path) -> None:
    done = record(rtsp_camera.dead_url(), tmp_path / "dead.mkv", 1)
    assert done.returncode != 0
    assert "Connection refused" in done.stderr, done.stderr[-2000:]
