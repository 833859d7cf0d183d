"""The recorder and the finisher with real ffmpeg and real sealing, on a fake camera with a fake clock.

Functional tier: files and ffmpeg, no network. The camera is a scene function driven by a clock the test
advances by one frame per read, so nothing sleeps and every run records exactly the same frames. Clips are
320x180 (the smallest size where the default motion filters see the synthetic object) at 10 fps, 2 s long.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cryospy.common.clipmeta import CLIP_META_UUID, decode_meta_payload
from cryospy.common.keys import KeyStore, generate_device_signing_key, signing_key_to_text
from cryospy.common.sealed import open_sealed, read_header
from cryospy.common.settings import DeviceSettings
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.config import parse_config
from cryospy.edge_agent.errors import SourceError
from cryospy.edge_agent.finisher import ClipFinisher
from cryospy.edge_agent.recorder import RecordedClip, Recorder
from cryospy.edge_agent.scratch import open_scratch
from cryospy.edge_agent.settings_sync import SettingsSnapshot
from cryospy.edge_agent.sources import SourceEnded
from cryospy.edge_agent.spool import Spool
from cryospy.edge_agent.synthetic import SyntheticScene
from cryospy.functions.clips.mp4 import find_uuid_box, parse_mp4
from tests.support import wait_for

W, H, FPS = 320, 180, 10.0
EPOCH = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)
QUIET = SyntheticScene(width=W, height=H, fps=FPS, moving=False, timestamp=False)
MOVING = SyntheticScene(width=W, height=H, fps=FPS, timestamp=False)
FAST_MOTION = {"motion_warm_up_frames": 5}


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def utc(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t - 1000.0)


class SceneCamera:
    """Frame ``i`` comes from ``picture(i)``; reading advances the clock by one frame."""

    def __init__(self, picture: Callable[[int], np.ndarray], clock: FakeClock, *, fail_at: int | None = None,
                 end_at: int | None = None) -> None:
        self.picture, self.clock, self.fail_at, self.end_at = picture, clock, fail_at, end_at
        self.fps, self.width, self.height = FPS, W, H
        self.i = 0

    def read(self) -> np.ndarray:
        if self.i == self.fail_at:
            self.fail_at = None
            raise SourceError("camera unplugged")
        if self.i == self.end_at:
            raise SourceEnded("the test scene is over")
        self.clock.t += 1 / FPS
        frame = self.picture(self.i)
        self.i += 1
        return frame

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return KeyStore.create(tmp_path_factory.mktemp("k") / "keys.json", "pass", scrypt_n=2**10,
                           insecure_for_tests=True)


TOKEN = "_qtokenqtokenqtokenqtokenqt"


class Rig:
    """A recorder feeding a finisher synchronously, stopping after ``clips`` clips or at the scene's end."""

    def __init__(self, tmp_path: Path, store: KeyStore, settings: DeviceSettings, picture, *, clips: int,
                 **camera: Any) -> None:
        self.signer = generate_device_signing_key()
        self.config = parse_config({
            "client_id": "cam", "client_secret": "00" * 32, "server_url": "http://127.0.0.1:1",
            "deployment_public_key": store.current_public_key().to_text(),
            "signing_key": signing_key_to_text(self.signer), "clip_seconds": 2, "fps": FPS,
            "source_retry_max_seconds": 1, "temp_dir": str(tmp_path),
        }, tmp_path)
        self.store = store
        self.snapshot = SettingsSnapshot(settings, '"etag-1"', store.current_public_key(), "server")
        self.spool = Spool(self.config.spool_dir, 10**8)
        self.scratch = open_scratch(self.config.spool_dir, self.config.temp_dir)
        self.stop = threading.Event()
        self.finisher = ClipFinisher("cam", self.spool, self.signer, storage_token=lambda: TOKEN)
        self.clock = FakeClock()
        self.opened = 0
        self.recorded: list[RecordedClip] = []
        self.wanted = clips

        def open_camera(fps: float) -> SceneCamera:
            self.opened += 1
            return SceneCamera(picture, self.clock, **camera if self.opened == 1 else {})

        def handoff(clip: RecordedClip) -> None:
            self.recorded.append(clip)
            self.finisher.finish(clip)
            if len(self.recorded) >= self.wanted:
                self.stop.set()

        self.recorder = Recorder(self.config, lambda: self.snapshot, open_camera, handoff, self.scratch, self.stop,
                                 utc=self.clock.utc, monotonic=lambda: self.clock.t)

    def run(self) -> None:
        self.recorder.run()
        for held in self.finisher.keeper.release_all():
            held.plain.unlink(missing_ok=True)

    def opened_clip(self, entry) -> tuple[bytes, dict[str, Any]]:
        data = self.spool.sealed_path(entry).read_bytes()
        reader = open_sealed(io.BytesIO(data), keyring=self.store.unlock("pass"),
                             signer_public_key=self.signer.public_key(), expected_object_key=entry.key)
        plain = b"".join(reader.iter_plaintext())
        payload = find_uuid_box(lambda off, n: plain[off:off + n], len(plain), CLIP_META_UUID)
        assert payload is not None
        return plain, decode_meta_payload(payload)


def test_a_moving_object_is_recorded_as_motion_with_a_sealed_metadata_box(tmp_path: Path, store: KeyStore):
    rig = Rig(tmp_path, store, DeviceSettings(**FAST_MOTION), MOVING.frame, clips=2)
    rig.run()
    entries = rig.spool.entries()
    assert [e.sequence for e in entries] == [0, 1]
    # Sealed under the storage token the server gave, in the key and in the clear header: never "cam".
    assert all(e.key.startswith(f"clips/{TOKEN}/") for e in entries)
    header = read_header(io.BytesIO(rig.spool.sealed_path(entries[0]).read_bytes()))
    assert header.device_id == TOKEN and header.object_key == entries[0].key
    last = entries[-1]
    assert last.motion is True and last.motion_summary is not None and last.motion_summary["motion"] is True
    plain, meta = rig.opened_clip(last)
    assert meta["motion"]["motion"] is True and meta["motion"]["intervals"]
    assert (meta["frames"], meta["duration_s"], meta["fps"], meta["width"], meta["height"]) == (20, 2.0, FPS, W, H)
    assert meta["settings_etag"] == '"etag-1"' and meta["kept_for"] == "recording" and meta["agent_version"]
    info = parse_mp4(lambda off, n: plain[off:off + n], len(plain))     # the box does not disturb the MP4
    assert (info.width, info.height) == (W, H) and info.duration_s == pytest.approx(2.0)
    # Back to back: the second clip starts where the first ends, on the camera's timeline.
    assert last.captured_at == "2026-05-01T08:00:02.100Z" and entries[0].captured_at == "2026-05-01T08:00:00.100Z"
    assert list(rig.scratch.iterdir()) == []


def test_motion_max_frames_samples_the_clip_evenly(tmp_path: Path, store: KeyStore):
    rig = Rig(tmp_path, store, DeviceSettings(**{**FAST_MOTION, "motion_warm_up_frames": 2,
                                                 "motion_max_frames": 5}), MOVING.frame, clips=2)
    rig.run()
    _, meta = rig.opened_clip(rig.spool.entries()[1])
    # 20 frames, at most 5 analysed: every 4th, across the whole clip (not the first 5).
    assert meta["frames"] == 20 and meta["motion"]["frames_analysed"] == 5


def test_a_quiet_scene_is_no_motion(tmp_path: Path, store: KeyStore):
    rig = Rig(tmp_path, store, DeviceSettings(**FAST_MOTION), QUIET.frame, clips=2)
    rig.run()
    assert [e.motion for e in rig.spool.entries()] == [False, False]
    _, meta = rig.opened_clip(rig.spool.entries()[1])
    assert meta["motion"]["motion"] is False and meta["motion_error"] is None


def test_motion_only_keeps_context_and_leaves_no_gap_in_the_chain(tmp_path: Path, store: KeyStore):
    # Clips of 2 s: quiet 0-3, object in clip 4 only, quiet afterwards.
    def picture(i: int) -> np.ndarray:
        return MOVING.frame(i) if 80 <= i < 100 else QUIET.frame(i)

    settings = DeviceSettings(motion_only=True, motion_pre_seconds=1, motion_post_seconds=1, **FAST_MOTION)
    rig = Rig(tmp_path, store, settings, picture, clips=8)
    rig.run()
    entries = rig.spool.entries()
    assert [e.sequence for e in entries] == [0, 1, 2]                 # no numbers spent on discarded clips
    kept_for = [rig.opened_clip(e)[1]["kept_for"] for e in entries]
    assert kept_for == ["pre_context", "motion", "post_context"]
    assert [e.captured_at[-10:] for e in entries] == ["00:06.100Z", "00:08.100Z", "00:10.100Z"]
    assert rig.finisher.discarded == 4 and list(rig.scratch.iterdir()) == []


def test_a_detector_that_cannot_work_flags_the_clip_and_never_says_motion(tmp_path: Path, store: KeyStore):
    everything = (((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)),)
    rig = Rig(tmp_path, store, DeviceSettings(motion_masks=everything, motion_only=True), MOVING.frame, clips=1)
    rig.run()
    [entry] = rig.spool.entries()
    assert entry.motion is False and entry.motion_error is True and entry.motion_summary is None
    assert rig.opened_clip(entry)[1]["kept_for"] == "motion_error"
    assert rig.recorder.motion_state.startswith("error:")


def test_a_lost_source_keeps_the_partial_clip_reopens_and_goes_on(tmp_path: Path, store: KeyStore):
    rig = Rig(tmp_path, store, DeviceSettings(**FAST_MOTION), QUIET.frame, clips=3, fail_at=25)
    rig.run()
    entries = rig.spool.entries()
    assert [e.duration_s for e in entries] == [2.0, 0.5, 2.0]         # 20 frames, the 5 before the loss, 20
    assert rig.opened == 2 and rig.recorder.source_state == "ok"


def test_a_file_that_ends_stops_recording_after_its_last_clip(tmp_path: Path, store: KeyStore):
    rig = Rig(tmp_path, store, DeviceSettings(**FAST_MOTION), QUIET.frame, clips=99, end_at=30)
    rig.run()
    assert [e.duration_s for e in rig.spool.entries()] == [2.0, 1.0]
    assert rig.recorder.source_state.startswith("ended")


def test_stop_ends_the_current_clip_early_and_an_agent_leaves_no_plaintext(tmp_path: Path, store: KeyStore):
    signer = generate_device_signing_key()
    config = parse_config({
        "client_id": "cam", "client_secret": "00" * 32, "server_url": "http://127.0.0.1:9",
        "deployment_public_key": store.current_public_key().to_text(), "signing_key": signing_key_to_text(signer),
        "camera_device": "synthetic:160x96", "clip_seconds": 30, "fps": 10, "temp_dir": str(tmp_path),
        "server_timeout_seconds": 1,
    }, tmp_path)
    agent = Agent.build(config)
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    thread.start()
    wait_for(lambda: any(agent.scratch.glob("*.mp4")), what="the first clip to start")
    agent.stop.set()
    thread.join(60)
    [entry] = agent.spool.entries()                  # the server is unreachable: it waits in the spool
    assert 0 < entry.duration_s < 30
    assert not agent.scratch.exists()
    status = agent.status()
    assert status["spool_depth"] == 1 and status["last_sequence"] == 0 and status["settings_etag"] == ""
