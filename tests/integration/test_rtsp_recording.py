"""IP cameras recorded as they stream, end to end on real parts: GStreamer's RTSP server serving H.264 and H.265
files (tests/rtsp_camera), real edge agents (passthrough through ffmpeg -c copy), the real runtime and MinIO.

What a user relies on: the clips hold the camera's own packets (compared per packet with the served file),
an H.265 camera yields clips that verify, export and decode, a camera outage is reported once and loses
nothing, one agent records several cameras while one of them is dead, motion comes from the sub-stream, and
the camera's password appears nowhere the server or the agent writes.

Bad input (issue 11), each camera next to a healthy one in the same agent, which keeps recording: a URL
that serves sound only is told as "no video track" and stores nothing; an MJPEG camera is re-encoded to
H.264 and says why; a 4:3 sub-stream under a 16:9 main stream is named in the motion state. Each sentence
is on the admin device page, and the password is in neither.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
import threading
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import av
import ffmpeg
import numpy as np
import pytest

from cryospy.cli.admin_client import AdminClient
from cryospy.cli.devices import create_device
from cryospy.common.ffmpeg_tool import run_ffmpeg
from cryospy.common.keys import verify_key_from_text
from cryospy.common.objectkeys import device_hex
from cryospy.common.sealed import open_bytes
from cryospy.common.timefmt import parse_utc, utc_stamp
from cryospy.edge_agent.agent import run_agents
from cryospy.edge_agent.config import load_configs
from cryospy.functions.index.records import ClipRecord
from cryospy.infra.deployment import Deployment
from tests.integration.test_export import _login, _ready, _start_export, _verify
from tests.rtsp_camera.fixture import RtspCamera
from tests.rtsp_camera.packets import find_in_loop, packet_digests
from tests.support import wait_for

pytestmark = pytest.mark.integration

AGENT = {"clip_seconds": 3, "settings_sync_seconds": 5, "server_timeout_seconds": 5,
         "upload_retry_minutes": 0.05, "source_retry_max_seconds": 2}
# The test scene's object crosses every 4 s: learn the background quickly, count short runs.
QUICK_MOTION = {"motion_warm_up_frames": 3, "motion_min_seconds": 0.2, "motion_detect_fps": 5}


class Agents:
    """`cryospy agent --config FILE` on a thread (minus signal handlers), for every camera in FILE."""

    def __init__(self, config_path: Path) -> None:
        self.stop_event = threading.Event()
        self.configs = load_configs(config_path)
        self.thread = threading.Thread(target=run_agents, args=(self.configs, self.stop_event), name="agents")
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(120)
        assert not self.thread.is_alive()


def enrol(dep: Deployment, tmp_path: Path, device_id: str, camera: str, *, detect: str = "",
          settings: dict[str, Any] | None = None, add_to: Path | None = None) -> Path:
    """`cryospy devices create` (the agent makes its own key), then the admin's settings for the camera."""
    overrides = {**AGENT, "camera_device": camera, "temp_dir": str(tmp_path),
                 **({"detect_device": detect} if detect else {})}
    path = add_to or tmp_path / f"{device_id}.json"
    create_device(dep, device_id, None if add_to else path, overrides, agent_generates_key=True, add_to=add_to)
    AdminClient(dep.runtime_url, dep.admin_token).call(
        "PATCH", f"/v1/admin/devices/{quote(device_id)}/settings", {**QUICK_MOTION, **(settings or {})})
    return path


def clips(rt: Any, device_id: str) -> list[ClipRecord]:
    found = [c for day in rt.services.index.days(device_id) for c in rt.services.index.clips_for_day(device_id, day)]
    return sorted((c for c in found if not c.missing), key=lambda c: c.sequence)


def at_least(rt: Any, device_id: str, n: int, timeout: float = 120) -> list[ClipRecord]:
    return wait_for(lambda: (found := clips(rt, device_id)) and len(found) >= n and found, timeout=timeout,
                    what=f"{n} clips of {device_id} indexed")


def plaintext(rt: Any, device_id: str, key: str) -> bytes:
    """The clip as the camera sealed it, opened with the deployment's key and checked against the device's."""
    sealed = rt.services.handler_client.get_object(Bucket=rt.services.bucket, Key=key)["Body"].read()
    device = rt.services.devices.get(device_id)
    return open_bytes(sealed, keyring=rt.services.vault.keys(), signer_public_key=verify_key_from_text(
        device.signing_key), expected_object_key=key)


def heartbeat(rt: Any, device_id: str) -> dict[str, Any]:
    return rt.services.devices.get(device_id).heartbeat or {}


def test_an_rtsp_camera_is_stored_packet_for_packet_with_motion_from_its_sub_stream(
        deployment, runtime, rtsp_camera: RtspCamera, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    config = enrol(deployment, tmp_path, "rtsp-porch", rtsp_camera.url("main"), detect=rtsp_camera.url("sub"))
    agents = Agents(config)
    try:
        found = at_least(runtime, "rtsp-porch", 4)
        beat = wait_for(lambda: heartbeat(runtime, "rtsp-porch").get("stream") and heartbeat(runtime, "rtsp-porch"),
                        timeout=60, what="a heartbeat describing the stream")
    finally:
        agents.stop()

    assert beat["record_mode"] == "passthrough" and beat["stream"] == "h264 640x360 15 fps"
    assert beat["motion_state"] == "ok" and beat["source_state"] == "ok"
    served = packet_digests(rtsp_camera.media_path("main"))
    for clip in found:
        assert clip.codec.startswith("avc1.") and clip.record_mode == "passthrough"
        assert clip.audio_codec is None                      # record_audio is off by default
        path = tmp_path / f"clip-{clip.sequence}.mp4"
        path.write_bytes(plaintext(runtime, "rtsp-porch", clip.key))
        recorded = packet_digests(path)
        find_in_loop(recorded, served)                         # every packet is one the camera sent, in order
        assert recorded[0].keyframe, "a clip starts at the camera's keyframe"
        assert 2.9 <= clip.duration_s <= 4.1, clip.duration_s
    # Back to back on the agent's clock: each clip starts where the previous one ended.
    for a, b in itertools.pairwise(found):
        gap = (parse_utc(b.captured_at) - parse_utc(a.captured_at)).total_seconds() - a.duration_s
        assert abs(gap) < 1.0, (a.captured_at, a.duration_s, b.captured_at)
    assert any(c.motion for c in found), "the object crossing every 4 s is motion on the sub-stream"

    # The camera's password: nowhere in what the server keeps or shows, nor in the agent's log.
    password = rtsp_camera.password
    assert password not in json.dumps([c.to_doc() for c in found]) and password not in json.dumps(beat)
    assert password not in caplog.text and "rtsp://***@" in caplog.text
    spool = agents.configs[0].spool_dir                         # settings cache, chain state, entry records
    written = [p for p in spool.rglob("*") if p.is_file()]
    assert written and not [p for p in written if password.encode() in p.read_bytes()]
    http = _login(deployment.runtime_url)
    page = http.get(f"{deployment.runtime_url}/admin/devices/{b'rtsp-porch'.hex()}", timeout=10)
    assert page.status_code == 200 and "passthrough" in page.text and password not in page.text


def test_an_h265_camera_yields_clips_that_verify_export_and_decode(deployment, runtime, rtsp_camera: RtspCamera,
                                                                   tmp_path: Path) -> None:
    config = enrol(deployment, tmp_path, "rtsp-h265", rtsp_camera.url("main_h265"))   # motion on its keyframes
    agents = Agents(config)
    try:
        found = at_least(runtime, "rtsp-h265", 3)
    finally:
        agents.stop()
    assert all(c.codec.startswith(("hvc1.", "hev1.")) and c.width == 640 for c in found)
    assert all(c.thumb_key for c in found), "thumbnails are made from H.265 too"
    served = packet_digests(rtsp_camera.media_path("main_h265"))
    video = tmp_path / "h265.mp4"
    video.write_bytes(plaintext(runtime, "rtsp-h265", found[1].key))
    find_in_loop(packet_digests(video), served)
    frames = run_ffmpeg(ffmpeg.input(str(video))["v:0"].output("-", f="framemd5").global_args("-v", "error"),
                        what="decoding an H.265 clip")
    assert len([ln for ln in frames.decode().splitlines() if ln and not ln.startswith("#")]) >= 40

    base = deployment.runtime_url
    http = _login(base)
    t0 = parse_utc(found[0].captured_at)
    started = _start_export(http, base, {"device": "rtsp-h265", "start": utc_stamp(t0),
                                         "end": utc_stamp(parse_utc(found[-1].captured_at) + timedelta(seconds=1))})
    assert started.status_code == 302
    progress = _ready(http, base, started.headers["Location"])
    data = http.get(base + progress["download"], timeout=60).content
    folder = tmp_path / "export"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["clips"]) >= 3
    result = _verify(folder)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_camera_outage_is_reported_once_and_nothing_recorded_is_lost(deployment, runtime, rtsp_camera: RtspCamera,
                                                                        tmp_path: Path) -> None:
    config = enrol(deployment, tmp_path, "rtsp-outage", rtsp_camera.url("main"))
    agents = Agents(config)
    try:
        before = at_least(runtime, "rtsp-outage", 2)
        with rtsp_camera.outage():                              # 10 s without the camera
            down_at = time.monotonic()
            wait_for(lambda: "offline since" in heartbeat(runtime, "rtsp-outage").get("source_state", ""),
                     timeout=60, what="the heartbeat to say the camera is offline")
            time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
        back = wait_for(lambda: [c for c in clips(runtime, "rtsp-outage") if c.source_gap] and
                        len(clips(runtime, "rtsp-outage")) >= len(before) + 3 and clips(runtime, "rtsp-outage"),
                        timeout=120, what="clips after the camera came back")
    finally:
        agents.stop()
    gaps = [c for c in back if c.source_gap]
    assert len(gaps) == 1, "the outage is reported once"
    gap = gaps[0].source_gap
    assert gap is not None
    offline = (parse_utc(gap.end) - parse_utc(gap.start)).total_seconds()
    assert 8 <= offline <= 40, gap
    assert gap.start >= before[0].captured_at and gap.end <= gaps[0].captured_at
    # Nothing recorded was lost: the chain has every sequence number, before and after the outage.
    assert [c.sequence for c in back] == list(range(len(back)))


def test_one_agent_records_several_cameras_while_one_is_dead(deployment, runtime, rtsp_camera: RtspCamera,
                                                            tmp_path: Path) -> None:
    nvr = tmp_path / "nvr.json"
    enrol(deployment, tmp_path, "nvr-front", rtsp_camera.url("main"), detect=rtsp_camera.url("sub"), add_to=nvr)
    enrol(deployment, tmp_path, "nvr-hall", rtsp_camera.url("still"), detect=rtsp_camera.url("still_sub"),
          add_to=nvr)
    enrol(deployment, tmp_path, "nvr-garden", rtsp_camera.url("main_aac"), settings={"record_audio": True},
          add_to=nvr)
    enrol(deployment, tmp_path, "nvr-broken", rtsp_camera.dead_url(), add_to=nvr)
    assert [c["client_id"] for c in json.loads(nvr.read_text())["cameras"]] == \
        ["nvr-front", "nvr-hall", "nvr-garden", "nvr-broken"]
    agents = Agents(nvr)
    live = ("nvr-front", "nvr-hall", "nvr-garden")
    try:
        recorded = {device: at_least(runtime, device, 4) for device in live}
        broken = wait_for(lambda: "connection refused" in heartbeat(runtime, "nvr-broken").get("source_state", "")
                          and heartbeat(runtime, "nvr-broken"), timeout=60, what="the dead camera's heartbeat")
    finally:
        agents.stop()
    for device, found in recorded.items():
        assert [c.sequence for c in found] == list(range(len(found))), device
        for a, b in itertools.pairwise(found):       # no gap while another camera keeps failing
            gap = (parse_utc(b.captured_at) - parse_utc(a.captured_at)).total_seconds() - a.duration_s
            assert abs(gap) < 1.0, (device, [(c.sequence, c.captured_at, c.duration_s) for c in found])
    assert broken["source_state"].startswith("offline since") and rtsp_camera.password not in json.dumps(broken)
    assert clips(runtime, "nvr-broken") == []
    # Motion from the sub-streams: the crossing object is motion, a still room with sensor noise is not.
    assert any(c.motion for c in recorded["nvr-front"])
    assert not any(c.motion for c in recorded["nvr-hall"]) and all(not c.motion_error
                                                                        for c in recorded["nvr-hall"])
    # Sound only where the admin allowed it, as AAC the browser plays.
    assert all(c.audio_codec == "mp4a.40.2" for c in recorded["nvr-garden"])
    assert all(c.audio_codec is None for c in recorded["nvr-front"])


def test_a_wrong_camera_password_is_told_plainly_and_never_shown(deployment, runtime, rtsp_camera: RtspCamera,
                                                                tmp_path: Path) -> None:
    wrong = rtsp_camera.url("main").replace(rtsp_camera.password, "not-the-password")
    config = enrol(deployment, tmp_path, "rtsp-locked", wrong)
    agents = Agents(config)
    try:
        beat = wait_for(lambda: "username or password" in heartbeat(runtime, "rtsp-locked").get("source_state", "")
                        and heartbeat(runtime, "rtsp-locked"), timeout=60, what="the refusal on the heartbeat")
    finally:
        agents.stop()
    assert "401" in beat["source_state"] and "not-the-password" not in json.dumps(beat)


def admin_page(deployment: Deployment, device_id: str) -> str:
    """The device's admin page as a reader sees its words (HTML entities decoded: ``stream's``, not ``&#39;``)."""
    page = _login(deployment.runtime_url).get(f"{deployment.runtime_url}/admin/devices/{device_hex(device_id)}",
                                              timeout=10)
    assert page.status_code == 200, page.status_code
    return html.unescape(page.text)


def heartbeat_saying(rt: Any, device_id: str, field: str, words: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for(lambda: words in heartbeat(rt, device_id).get(field, "") and heartbeat(rt, device_id),
                    timeout=timeout, what=f"{device_id}'s heartbeat to say {words!r} in {field}")


def decoded(path: Path) -> list[np.ndarray]:
    """Every video frame of ``path`` as signed greyscale pixels."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray").astype(np.int16) for frame in container.decode(video=0)]


def back_to_back(found: list[ClipRecord]) -> None:
    """Every sequence number, and each clip starting where the previous one ended (on the agent's clock)."""
    assert [c.sequence for c in found] == list(range(len(found)))
    for a, b in itertools.pairwise(found):
        gap = (parse_utc(b.captured_at) - parse_utc(a.captured_at)).total_seconds() - a.duration_s
        assert abs(gap) < 1.0, [(c.sequence, c.captured_at, c.duration_s) for c in found]


NO_VIDEO = "the stream has no video track; point camera_device at the camera's video stream"
MJPEG_REFUSED = "the camera sends mjpeg, which browsers cannot play; recording re-encodes it to H.264 instead"
OTHER_SHAPE = ("detect stream: the detect stream's picture (320x240) has another shape than the main stream "
               "(640x360); motion zones are placed on the detect picture")


def test_a_stream_without_video_is_told_plainly_and_the_next_camera_records(deployment, runtime,
                                                                           rtsp_camera: RtspCamera,
                                                                           tmp_path: Path) -> None:
    nvr = tmp_path / "nvr.json"
    enrol(deployment, tmp_path, "mic-porch", rtsp_camera.url("main"), add_to=nvr)
    enrol(deployment, tmp_path, "mic-only", rtsp_camera.url("audio_only"), add_to=nvr)
    agents = Agents(nvr)
    try:
        beat = heartbeat_saying(runtime, "mic-only", "source_state", NO_VIDEO)
        healthy = at_least(runtime, "mic-porch", 4)
        page = admin_page(deployment, "mic-only")
    finally:
        agents.stop()
    assert beat["source_state"].startswith("offline since ") and beat["record_mode"] == "passthrough"
    assert NO_VIDEO in page
    assert clips(runtime, "mic-only") == [], "a stream without video yields no clips"
    back_to_back(healthy)
    assert rtsp_camera.password not in json.dumps(beat) and rtsp_camera.password not in page


def test_an_mjpeg_camera_is_reencoded_to_h264_and_says_why(deployment, runtime, rtsp_camera: RtspCamera,
                                                           tmp_path: Path) -> None:
    nvr = tmp_path / "nvr.json"
    enrol(deployment, tmp_path, "jpeg-porch", rtsp_camera.url("main"), add_to=nvr)
    enrol(deployment, tmp_path, "jpeg-shed", rtsp_camera.url("mjpeg"), add_to=nvr)
    agents = Agents(nvr)
    try:
        transcoded = wait_for(lambda: len(found := [c for c in clips(runtime, "jpeg-shed")
                                                    if c.record_mode == "transcode"]) >= 3 and found,
                              timeout=150, what="3 re-encoded clips of the MJPEG camera")
        beat = heartbeat_saying(runtime, "jpeg-shed", "record_mode_reason", "mjpeg")
        healthy = at_least(runtime, "jpeg-porch", 4)
        page = admin_page(deployment, "jpeg-shed")
    finally:
        agents.stop()
    assert beat["record_mode"] == "transcode" and beat["record_mode_reason"] == MJPEG_REFUSED
    assert f"transcode ({MJPEG_REFUSED})" in page
    stored = clips(runtime, "jpeg-shed")
    assert all(c.codec.startswith("avc1.") for c in stored), [(c.codec, c.record_mode) for c in stored]
    for clip in transcoded:
        assert (clip.width, clip.height) == (640, 360) and 2.5 <= clip.duration_s <= 4.5, clip
    video = tmp_path / "mjpeg-as-h264.mp4"
    video.write_bytes(plaintext(runtime, "jpeg-shed", transcoded[-1].key))
    recorded = decoded(video)
    assert len(recorded) >= 30
    # The camera's picture, not decoder garbage: each sampled frame is close to one the camera sent.
    served = decoded(rtsp_camera.media_path("mjpeg"))
    for frame in recorded[::10]:
        closest = min(float(np.abs(frame - picture).mean()) for picture in served)
        assert closest < 6, f"a re-encoded frame is {closest:.1f} grey levels from every picture the camera sent"
    assert all(c.record_mode == "passthrough" for c in healthy)
    back_to_back(healthy)
    assert rtsp_camera.password not in json.dumps(beat) and rtsp_camera.password not in page


def test_a_sub_stream_of_another_shape_is_named_and_motion_goes_on(deployment, runtime, rtsp_camera: RtspCamera,
                                                                   tmp_path: Path) -> None:
    nvr = tmp_path / "nvr.json"
    enrol(deployment, tmp_path, "shape-porch", rtsp_camera.url("main"), detect=rtsp_camera.url("sub"), add_to=nvr)
    enrol(deployment, tmp_path, "shape-4x3", rtsp_camera.url("main"), detect=rtsp_camera.url("sub_4x3"), add_to=nvr)
    agents = Agents(nvr)
    try:
        beat = heartbeat_saying(runtime, "shape-4x3", "motion_state", "another shape")
        recorded = {device: at_least(runtime, device, 4) for device in ("shape-porch", "shape-4x3")}
        healthy_beat = heartbeat(runtime, "shape-porch")
        page = admin_page(deployment, "shape-4x3")
    finally:
        agents.stop()
    assert beat["motion_state"] == OTHER_SHAPE and OTHER_SHAPE in page
    assert beat["record_mode"] == "passthrough" and beat["source_state"] == "ok"
    assert healthy_beat["motion_state"] == "ok"
    for device, found in recorded.items():
        back_to_back(found)
        assert any(c.motion for c in found), f"{device}: the crossing object is motion on the sub-stream"
        assert not any(c.motion_error for c in found), device
    assert rtsp_camera.password not in json.dumps(beat) and rtsp_camera.password not in page
