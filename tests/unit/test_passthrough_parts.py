"""The pieces of passthrough recording that need no camera: URLs and redaction, the mode choice, the ffmpeg
command lines, the PGM frame pipe, motion placed on the clip timeline, multi-camera configs, and how a USB
camera is asked for its format. The real cameras are in tests/integration/test_rtsp_recording.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cryospy.common.keys import KeyStore
from cryospy.common.settings import DeviceSettings
from cryospy.edge_agent.config import load_config, load_configs, parse_configs
from cryospy.edge_agent.errors import ConfigError
from cryospy.edge_agent.motion_tap import MotionTap, PgmError, read_pgm_frames
from cryospy.edge_agent.passthrough import PassthroughPlan, detect_command, explain, recording_command
from cryospy.edge_agent.recording import choose_mode
from cryospy.edge_agent.sources import CaptureRequest, apply_capture_request
from cryospy.edge_agent.stream_url import is_stream_url, redact, url_password

URL = "rtsp://admin:p%40ss-w0rd@192.168.1.20:554/Streaming/Channels/101"


@pytest.fixture(scope="module")
def public_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = KeyStore.create(tmp_path_factory.mktemp("k") / "keys.json", "pass", scrypt_n=2**10,
                            insecure_for_tests=True)
    return store.current_public_key().to_text()


# --- URLs ---------------------------------------------------------------------------------------------------

def test_stream_urls_are_told_from_devices_and_files() -> None:
    assert is_stream_url(URL) and is_stream_url("RTSPS://cam/1") and is_stream_url("http://cam/video.mjpg")
    assert not any(map(is_stream_url, ("/dev/video0", "0", "synthetic:", "/srv/clip.mp4", "rtsp.mp4")))


def test_redact_hides_the_user_info_of_every_url_and_named_secrets() -> None:
    text = f"[rtsp @ 0x1] method DESCRIBE failed: 401 {URL} and rtsp://u@h/x, also http://a:b@c/"
    out = redact(text, "p@ss-w0rd")
    assert "p%40ss" not in out and "admin" not in out and "a:b@" not in out and "u@h" not in out
    assert "rtsp://***@192.168.1.20:554/Streaming/Channels/101" in out and "http://***@c/" in out
    assert redact("the password p@ss-w0rd leaked", "p@ss-w0rd") == "the password *** leaked"
    assert url_password(URL) == "p%40ss-w0rd" and url_password("rtsp://cam/1") == ""


# --- which recorder -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "camera", "refused", "mode"), [
    ({}, URL, None, "passthrough"),
    ({"record_mode": "passthrough"}, URL, None, "passthrough"),
    ({"record_mode": "transcode"}, URL, None, "transcode"),
    ({"grayscale": True}, URL, None, "transcode"),
    ({"downscale_resolution": "720p"}, URL, None, "transcode"),
    ({"grayscale": True, "record_mode": "passthrough"}, URL, None, "passthrough"),
    ({}, URL, "the camera sends mjpeg", "transcode"),
    ({}, "/dev/video0", None, "transcode"),
    ({"record_mode": "passthrough"}, "synthetic:", None, "transcode"),
])
def test_the_mode_follows_the_settings_and_the_source(settings: dict, camera: str, refused: str | None,
                                                      mode: str) -> None:
    chosen, why = choose_mode(DeviceSettings.from_dict(settings), camera, refused)
    assert chosen == mode and why
    if refused:
        assert why == refused


# --- ffmpeg command lines -------------------------------------------------------------------------------------

def _plan(public_key: str, **settings: object) -> PassthroughPlan:
    from cryospy.common.keys import DeploymentPublicKey

    return PassthroughPlan(DeviceSettings.from_dict(settings), '"e"', DeploymentPublicKey.from_text(public_key),
                           30.0, bool(settings.get("record_audio")), 4.0, 320)


def test_recording_copies_video_and_never_encodes_it(public_key: str, tmp_path: Path) -> None:
    args = recording_command(URL, tmp_path, _plan(public_key))
    joined = " ".join(args)
    assert args.count(URL) == 1 and "-vcodec copy" in joined and "libx264" not in joined
    assert "-rtsp_transport tcp" in joined and "-skip_frame nokey" in joined and "-f segment" in joined
    assert "-segment_time 30" in joined and "frag_keyframe+empty_moov+default_base_moof" in joined
    assert "0:a" not in joined, "audio is off by default"
    assert "-vcodec pgm" in joined and "pipe:1" in joined


def test_audio_only_when_allowed_and_sub_stream_motion_leaves_the_main_stream_undecoded(public_key: str,
                                                                                      tmp_path: Path) -> None:
    joined = " ".join(recording_command(URL, tmp_path, _plan(public_key, record_audio=True), transport="udp",
                                        motion_from_main=False))
    assert "-map 0:a:0?" in joined and "-acodec aac" in joined and "-rtsp_transport udp" in joined
    assert "skip_frame" not in joined and "pgm" not in joined
    detect = " ".join(detect_command("rtsp://cam/sub", _plan(public_key)))
    assert "fps=4" in detect and "scale=320:-2" in detect and "-vcodec pgm" in detect


@pytest.mark.parametrize(("stderr", "words"), [
    ("[rtsp @ 0x55] method DESCRIBE failed: 401 Unauthorized", "username or password"),
    ("Connection to tcp://127.0.0.1:9 failed: Connection refused", "connection refused"),
    ("Stream map '0:v:0' matches no streams.", "no video track"),
    ("[in#0/rtsp @ 0x56] Codec AVOption skip_frame (Rate Control Based Frame Skip) is not a decoding option.\n"
     "Error opening input files: Invalid argument", "no video track"),
    ("something new\n  the last line  \n", "the last line"),
])
def test_ffmpeg_failures_are_explained(stderr: str, words: str) -> None:
    assert words in explain(stderr)


# --- the PGM pipe -----------------------------------------------------------------------------------------------

def _pgm(frame: np.ndarray) -> bytes:
    return f"P5\n{frame.shape[1]} {frame.shape[0]}\n255\n".encode() + frame.tobytes()


def test_pgm_frames_are_read_back_as_sent() -> None:
    a = np.arange(6 * 4, dtype=np.uint8).reshape(4, 6)
    b = np.full((2, 3), 7, np.uint8)
    frames = list(read_pgm_frames(io.BytesIO(_pgm(a) + _pgm(b) + _pgm(a)[:-3])))
    assert len(frames) == 2 and (frames[0] == a).all() and (frames[1] == b).all()


@pytest.mark.parametrize("data", [b"P6\n2 2\n255\n" + bytes(12), b"P5\n99999 2\n255\n", b"P5\nx 2\n255\n",
                                  b"P5\n2 2\n65535\n" + bytes(8)])
def test_a_pipe_that_is_not_8bit_pgm_is_an_error(data: bytes) -> None:
    with pytest.raises(PgmError):
        list(read_pgm_frames(io.BytesIO(data)))


# --- motion on the clip timeline -----------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _scene(i: int, moving: bool) -> np.ndarray:
    rng = np.random.default_rng(i)
    frame = np.clip(90 + rng.normal(0, 3, (180, 320)), 0, 255).astype(np.uint8)
    if moving:
        x = 20 + 12 * i % 260
        frame[60:120, x:x + 40] = 230
    return frame


def test_motion_intervals_are_offsets_from_the_clip_cut() -> None:
    clock = Clock()
    tap = MotionTap(DeviceSettings.from_dict({"motion_warm_up_frames": 3}), monotonic=clock)
    for i in range(20):                        # 4 s at 5 fps, quiet
        tap.feed(_scene(i, False))
        clock.t += 0.2
    quiet, error = tap.cut()
    assert error is None and quiet is not None and not quiet.motion and quiet.frames_analysed == 20
    clock.t += 0.2
    for i in range(20):                        # the next clip: 2 s quiet, then 2 s of a moving box
        tap.feed(_scene(i, i >= 10))
        clock.t += 0.2
    summary, error = tap.cut()
    assert error is None and summary is not None and summary.motion
    start = summary.intervals[0].start_s
    assert 1.8 <= start <= 2.6, summary.intervals


def test_a_clip_without_motion_frames_is_flagged_not_called_quiet() -> None:
    tap = MotionTap(DeviceSettings(), monotonic=Clock())
    summary, error = tap.cut()
    assert summary is None and error and "no frames" in error
    tap.feed(_scene(0, False))
    tap.fail("the detect stream failed: connection refused")
    summary, error = tap.cut()
    assert summary is None and error == "the detect stream failed: connection refused"


def test_blob_filters_are_scaled_from_main_stream_pixels_to_the_detect_picture() -> None:
    clock = Clock()
    # 1000 px² of a 1920-wide main picture is ~28 px² at 320: a 40x60 box must count.
    tap = MotionTap(DeviceSettings.from_dict({"motion_warm_up_frames": 3, "motion_min_area": 20_000}),
                    monotonic=clock)
    tap.configure(DeviceSettings.from_dict({"motion_warm_up_frames": 3, "motion_min_area": 20_000}), (1920, 1080))
    for i in range(30):
        tap.feed(_scene(i, i >= 10))
        clock.t += 0.2
    summary, _ = tap.cut()
    assert summary is not None and summary.motion


# --- several cameras in one agent ----------------------------------------------------------------------------

def _camera(client_id: str, **extra: object) -> dict:
    return {"client_id": client_id, "client_secret": "s" * 43, "camera_device": f"rtsp://cam-{client_id}/1",
            **extra}


def test_one_file_lists_several_cameras_with_shared_defaults(tmp_path: Path, public_key: str) -> None:
    doc = {"server_url": "https://nvr.lan:8443", "deployment_public_key": public_key, "rtsp_transport": "udp",
           "cameras": [_camera("porch", detect_device="rtsp://cam-porch/2"), _camera("garden", rtsp_transport="tcp"),
                       _camera("drive", spool_dir="/var/spool/drive")]}
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(doc))
    porch, garden, drive = load_configs(path)
    assert (porch.client_id, porch.spool_dir, porch.detect_device, porch.rtsp_transport) == \
        ("porch", tmp_path / "spool-porch", "rtsp://cam-porch/2", "udp")
    assert garden.rtsp_transport == "tcp" and garden.server_url == "https://nvr.lan:8443"
    assert drive.spool_dir == Path("/var/spool/drive")
    with pytest.raises(ConfigError, match="lists 3 cameras"):
        load_config(path)


@pytest.mark.parametrize(("cameras", "message"), [
    ([], "list of 1 to"),
    ([_camera("a"), _camera("a")], "share client_id"),
    ([_camera("a", spool_dir="x"), _camera("b", spool_dir="x")], "share spool_dir"),
    ([_camera("a", rtsp_transport="quic")], r"cameras\[0\]: config key 'rtsp_transport'"),
    ([_camera("a", detect_device="/dev/video1")], "detect_device"),
    (["porch"], r"cameras\[0\] must be a JSON object"),
])
def test_bad_camera_lists_are_refused_with_the_camera_named(cameras: list, message: str, public_key: str) -> None:
    doc = {"server_url": "http://nvr:8080", "deployment_public_key": public_key, "cameras": cameras}
    with pytest.raises(ConfigError, match=message):
        parse_configs(doc, Path("/tmp"))


# --- USB cameras are asked for what the admin set ---------------------------------------------------------------

class Device:
    """The properties a V4L2 driver keeps; it grants 1280x720 when asked for more, as many webcams do."""

    def __init__(self) -> None:
        self.props = {cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0, cv2.CAP_PROP_FPS: 30.0,
                      cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*"YUYV"))}
        self.calls: list[int] = []

    def set(self, prop: int, value: float) -> bool:
        self.calls.append(prop)
        if prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT):
            value = min(value, 1280.0 if prop == cv2.CAP_PROP_FRAME_WIDTH else 720.0)
        self.props[prop] = float(value)
        return True

    def get(self, prop: int) -> float:
        return self.props[prop]


def test_capture_request_sets_fourcc_first_and_reports_what_was_granted() -> None:
    device = Device()
    granted = apply_capture_request(device, CaptureRequest(1920, 1080, 15.0, "MJPG"))  # type: ignore[arg-type]
    assert device.calls[0] == cv2.CAP_PROP_FOURCC
    assert granted == "1280x720 15 fps MJPG (asked for 1920x1080 15 fps MJPG)"
    assert apply_capture_request(Device(), CaptureRequest()) == "640x480 30 fps YUYV"  # type: ignore[arg-type]


# --- placing clips on the agent's clock ----------------------------------------------------------------------

def test_a_sessions_clips_are_back_to_back_and_a_timestamp_jump_reanchors() -> None:
    from datetime import UTC, datetime, timedelta

    from cryospy.edge_agent.passthrough import SessionClock

    t0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    clock = SessionClock()
    # The first clip's report lags its content by 2 s of start-up buffering; the next comes 1 s later.
    first = clock.place(t0 + timedelta(seconds=5), 0.0, 3.0)
    second = clock.place(t0 + timedelta(seconds=6), 3.0, 6.0)
    third = clock.place(t0 + timedelta(seconds=9.2), 6.0, 9.0)
    assert first == t0 + timedelta(seconds=2) and second == first + timedelta(seconds=3)
    assert third == second + timedelta(seconds=3) and clock.reanchored == 0
    # The camera's clock jumps an hour ahead: placed by when it arrived, not by the camera's word.
    jumped = clock.place(t0 + timedelta(seconds=12.3), 3609.0, 3612.0)
    assert jumped == t0 + timedelta(seconds=9.3) and clock.reanchored == 1


# --- plaintext scratch prefers RAM -------------------------------------------------------------------------------

MOUNTS = """/dev/vda1 / ext4 rw,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0
tmpfs /run/user/1000 tmpfs rw,nosuid,nodev,size=805300k 0 0
/dev/sdb1 /srv/my\\040camera ext4 rw 0 0
"""


def test_the_file_system_of_a_path_is_its_longest_mount_point() -> None:
    from cryospy.edge_agent.scratch import filesystem_of

    assert filesystem_of(Path("/dev/shm/cryospy-agent-1"), MOUNTS) == "tmpfs"
    assert filesystem_of(Path("/dev/shmem"), MOUNTS) == "ext4"
    assert filesystem_of(Path("/run/user/1000"), MOUNTS) == "tmpfs"
    assert filesystem_of(Path("/srv/my camera/x"), MOUNTS) == "ext4"
    assert filesystem_of(Path("/tmp/x"), MOUNTS) == "ext4"


def test_plaintext_scratch_goes_to_ram_when_a_ram_directory_has_room(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    import tempfile

    from cryospy.edge_agent.scratch import default_temp_dir, warn_if_persistent

    ram = f"tmpfs {tmp_path} tmpfs rw 0 0\n"
    assert default_temp_dir((str(tmp_path),), MOUNTS + ram) == tmp_path
    # Not RAM-backed, or missing: the system temp dir, and a warning where the scratch lands on a disk.
    assert default_temp_dir((str(tmp_path), "/nonexistent"), MOUNTS) == Path(tempfile.gettempdir())
    if warn_if_persistent(tmp_path):
        assert "not in RAM" in caplog.text and "temp_dir" in caplog.text
