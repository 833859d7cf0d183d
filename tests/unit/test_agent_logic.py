"""The agent's pure decisions: constant-rate timing, motion_only context, recording plans, settings sync,
the slot request and the heartbeat. No network, no camera, no ffmpeg."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryospy.common.keys import KeyStore
from cryospy.common.settings import DEFAULT_SETTINGS, DeviceSettings
from cryospy.edge_agent.api_client import Retryable, SettingsResponse, Slot
from cryospy.edge_agent.config import parse_config
from cryospy.edge_agent.errors import ConfigError
from cryospy.edge_agent.framerate import FrameClock, Placement
from cryospy.edge_agent.heartbeat import Heartbeat
from cryospy.edge_agent.motion import MotionInterval, MotionSummary
from cryospy.edge_agent.motion_context import MOTION, MOTION_ERROR, POST, PRE, RECORDING, ContextKeeper
from cryospy.edge_agent.plan import RecordingPlan
from cryospy.edge_agent.settings_sync import SettingsSnapshot, SettingsSync
from cryospy.edge_agent.spool import SpoolEntry
from cryospy.edge_agent.uploader import Uploader


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("keys")
    store = KeyStore.create(d / "keys.json", "pass", scrypt_n=2**10, insecure_for_tests=True)
    first = store.current_public_key()
    second = store.rotate("pass")
    return first, second


def _config(tmp_path: Path, **extra: Any):
    doc = {"client_id": "cam", "client_secret": "00" * 32, "server_url": "http://127.0.0.1:1",
           "deployment_public_key": extra.pop("key"), "signing_key": "unused-here", **extra}
    return parse_config(doc, tmp_path)


# -- constant-rate timing ------------------------------------------------------------------------------------

def _place_all(clock: FrameClock, times: list[float]) -> list[Placement]:
    return [clock.place(t) for t in times]


def test_frames_at_the_planned_rate_fill_one_slot_each():
    clock = FrameClock(10)
    assert [p.copies for p in _place_all(clock, [100 + i / 10 for i in range(20)])] == [1] * 20


def test_a_slow_camera_repeats_frames_so_the_clip_keeps_wall_time():
    clock = FrameClock(10)
    copies = [p.copies for p in _place_all(clock, [i / 5 for i in range(10)])]   # 5 fps into a 10 fps plan
    assert copies[0] == 1 and copies[1:] == [2] * 9
    assert clock.next_slot == 19          # 1.8 s of wall time, 19 slots of 0.1 s


def test_a_fast_camera_has_every_other_frame_skipped():
    clock = FrameClock(10)
    copies = [p.copies for p in _place_all(clock, [i / 20 for i in range(40)])]  # 20 fps into 10 fps
    assert set(copies) == {0, 1} and copies.count(0) == 19       # half the frames skipped
    assert sum(copies) == clock.next_slot == 21                   # slots up to the last arrival, 1.95 s


def test_a_long_gap_is_a_stall_not_a_frozen_picture():
    clock = FrameClock(10, max_gap_s=2.0)
    clock.place(0.0)
    clock.place(0.1)
    stalled = clock.place(5.0)
    assert stalled == Placement(1, True)
    assert clock.place(5.1) == Placement(1, False)       # the timeline restarted at the stalled frame


# -- motion_only context -----------------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class Clip:
    n: int
    motion_at: tuple[float, float] | None = None
    motion_error: str | None = None
    duration_s: float = 2.0

    @property
    def captured_at(self) -> datetime:
        return T0 + timedelta(seconds=2 * self.n)

    @property
    def summary(self) -> MotionSummary | None:
        if self.motion_error:
            return None
        if self.motion_at is None:
            return MotionSummary(False, 0.0, (), None, 20, 0)
        return MotionSummary(True, 0.1, (MotionInterval(*self.motion_at, 0.1),), self.motion_at[0], 20, 0)


def _run(clips: list[Clip], pre: float, post: float, motion_only: bool = True):
    keeper: ContextKeeper[Clip] = ContextKeeper()
    kept, discarded = [], []
    for clip in clips:
        d = keeper.decide(clip, motion_only=motion_only, pre_s=pre, post_s=post)
        kept += [(c.n, why) for c, why in d.keep]
        discarded += [c.n for c in d.discard]
    return kept, discarded, [c.n for c in keeper.release_all()]


def test_motion_only_keeps_motion_with_pre_and_post_context():
    clips = [Clip(0), Clip(1), Clip(2), Clip(3, motion_at=(0.5, 1.5)), Clip(4), Clip(5), Clip(6)]
    kept, discarded, held = _run(clips, pre=1.0, post=1.0)
    # Motion at 6.5-7.5 s: pre-context 5.5-6.5 lies in clip 2, post-context 7.5-8.5 in clip 4.
    assert kept == [(2, PRE), (3, MOTION), (4, POST)]
    assert discarded == [0, 1, 5] and held == [6]


def test_pre_context_longer_than_a_clip_holds_several_clips_and_no_more():
    clips = [Clip(0), Clip(1), Clip(2), Clip(3), Clip(4, motion_at=(0.0, 2.0))]
    kept, discarded, _ = _run(clips, pre=3.0, post=0.0)
    assert kept == [(2, PRE), (3, PRE), (4, MOTION)]
    assert discarded == [0, 1]


def test_motion_late_in_a_clip_needs_no_earlier_clip():
    kept, discarded, _ = _run([Clip(0), Clip(1, motion_at=(1.5, 2.0))], pre=1.0, post=0.0)
    assert kept == [(1, MOTION)] and discarded == [0]


def test_a_failed_analysis_is_kept_and_flagged_never_motion():
    kept, discarded, _ = _run([Clip(0), Clip(1, motion_error="opencv failed"), Clip(2)], pre=5.0, post=5.0)
    assert kept == [(1, MOTION_ERROR)]
    assert discarded == [0]


def test_without_motion_only_everything_is_kept_including_held_clips():
    keeper: ContextKeeper[Clip] = ContextKeeper()
    assert keeper.decide(Clip(0), motion_only=True, pre_s=5, post_s=5).keep == []
    decision = keeper.decide(Clip(1), motion_only=False, pre_s=5, post_s=5)
    assert [(c.n, why) for c, why in decision.keep] == [(0, RECORDING), (1, RECORDING)]


def test_zero_pre_context_holds_nothing():
    kept, discarded, held = _run([Clip(0), Clip(1)], pre=0.0, post=0.0)
    assert kept == [] and discarded == [0, 1] and held == []


# -- recording plans ---------------------------------------------------------------------------------------------

def _snapshot(key, **settings: Any) -> SettingsSnapshot:
    return SettingsSnapshot(DeviceSettings(**settings), '"e1"', key, "server")


def test_plan_follows_the_server_settings(tmp_path: Path, two_keys):
    config = _config(tmp_path, key=two_keys[0].to_text())
    plan = RecordingPlan.build(_snapshot(two_keys[0], clip_duration_seconds=30, downscale_resolution="360p",
                                         capture_frame_rate=12, crf=30, video_bitrate="800k", grayscale=True,
                                         segment_seconds=2), config, (1280, 720))
    assert (plan.clip_seconds, plan.fps, plan.frames_per_clip) == (30, 12, 360)
    e = plan.encode
    assert (e.width, e.height, e.crf, e.bitrate, e.grayscale, e.keyframe_seconds) == (640, 360, 30, "800k", True, 2)


def test_camera_size_is_kept_and_made_even_without_a_downscale(tmp_path: Path, two_keys):
    plan = RecordingPlan.build(_snapshot(two_keys[0]), _config(tmp_path, key=two_keys[0].to_text()), (161, 97))
    assert (plan.encode.width, plan.encode.height) == (160, 96) and plan.frame_size == (161, 97)


def test_config_pins_win_over_the_server(tmp_path: Path, two_keys):
    config = _config(tmp_path, key=two_keys[0].to_text(), clip_seconds=2, fps=10, width=160, height=96, crf=20,
                     keyframe_seconds=1)
    plan = RecordingPlan.build(_snapshot(two_keys[0], clip_duration_seconds=60, downscale_resolution="720p"),
                               config, (640, 360))
    assert (plan.clip_seconds, plan.fps, plan.encode.width, plan.encode.height, plan.encode.crf) == (2, 10, 160, 96,
                                                                                                     20)


def test_a_detector_relevant_change_changes_the_motion_key(tmp_path: Path, two_keys):
    config = _config(tmp_path, key=two_keys[0].to_text())
    a = RecordingPlan.build(_snapshot(two_keys[0]), config, (320, 180))
    b = RecordingPlan.build(_snapshot(two_keys[0], crf=40), config, (320, 180))
    c = RecordingPlan.build(_snapshot(two_keys[0], motion_min_area=50), config, (320, 180))
    assert a.motion_key() == b.motion_key() != c.motion_key()


# -- settings sync ----------------------------------------------------------------------------------------------

@dataclass
class FakeApi:
    documents: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    up: bool = True
    asked_with: list[str] = field(default_factory=list)
    beats: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    beat_answer: dict[str, Any] = field(default_factory=lambda: {"ok": True})

    def get_settings(self, etag: str = "") -> SettingsResponse | None:
        self.asked_with.append(etag)
        if not self.up:
            raise Retryable("cannot reach the server")
        doc, tag = self.documents[-1]
        return None if etag == tag else SettingsResponse(doc, tag)

    def heartbeat(self, doc: dict[str, Any]) -> dict[str, Any]:
        if not self.up:
            raise Retryable("cannot reach the server")
        self.beats.append(doc)
        return self.beat_answer

    def request_slot(self, doc: dict[str, Any]) -> Slot:
        self.slots.append(doc)
        return Slot("http://127.0.0.1:1/x", {}, "clips/cam/k.cse")

    def put(self, slot: Slot, path: Path) -> int:
        return 200

    def confirm(self, key: str) -> None:
        self.confirmed.append(key)


def _document(key, **settings: Any) -> dict[str, Any]:
    return {"device_id": "cam", "settings": DeviceSettings(**settings).to_dict(),
            "deployment_public_key": key.to_text()}


def test_first_start_without_server_or_cache_records_on_defaults(tmp_path: Path, two_keys):
    api = FakeApi(up=False)
    sync = SettingsSync(_config(tmp_path, key=two_keys[0].to_text()), api, tmp_path / "settings.json",  # type: ignore[arg-type]
                        threading.Event())
    snap = sync.current()
    assert snap.settings == DEFAULT_SETTINGS and snap.etag == "" and snap.origin == "defaults"
    assert snap.recipient.key_id == two_keys[0].key_id
    with pytest.raises(Retryable):
        sync.sync_once()
    assert sync.current() is snap


def test_fetched_settings_are_cached_and_used_when_the_server_is_down(tmp_path: Path, two_keys):
    api = FakeApi([(_document(two_keys[0], clip_duration_seconds=20), '"v1"')])
    config = _config(tmp_path, key=two_keys[0].to_text())
    sync = SettingsSync(config, api, tmp_path / "settings.json", threading.Event())  # type: ignore[arg-type]
    assert sync.sync_once() is True
    assert sync.current().settings.clip_duration_seconds == 20 and sync.current().etag == '"v1"'
    assert json.loads((tmp_path / "settings.json").read_text())["etag"] == '"v1"'
    restarted = SettingsSync(config, FakeApi(up=False), tmp_path / "settings.json",  # type: ignore[arg-type]
                             threading.Event())
    assert restarted.current().origin == "cache"
    assert restarted.current().settings.clip_duration_seconds == 20 and restarted.current().etag == '"v1"'


def test_the_storage_token_comes_with_the_settings_and_survives_a_restart_offline(tmp_path: Path, two_keys):
    token = "_storagetokenstoragetokenst"
    api = FakeApi([({**_document(two_keys[0]), "storage_token": token}, '"v1"')])
    config = _config(tmp_path, key=two_keys[0].to_text())
    sync = SettingsSync(config, api, tmp_path / "settings.json", threading.Event())  # type: ignore[arg-type]
    assert sync.current().storage_token == ""              # nothing known before the first answer
    sync.sync_once()
    assert sync.current().storage_token == token
    restarted = SettingsSync(config, FakeApi(up=False), tmp_path / "settings.json",  # type: ignore[arg-type]
                             threading.Event())
    assert restarted.current().storage_token == token      # from the cache: it seals under the token offline


def test_unchanged_settings_cost_a_304_and_a_change_applies(tmp_path: Path, two_keys):
    api = FakeApi([(_document(two_keys[0]), '"v1"')])
    sync = SettingsSync(_config(tmp_path, key=two_keys[0].to_text()), api, tmp_path / "s.json",  # type: ignore[arg-type]
                        threading.Event())
    sync.sync_once()
    assert sync.sync_once() is False and api.asked_with[-1] == '"v1"'
    api.documents.append((_document(two_keys[0], crf=30, settings_sync_seconds=5), '"v2"'))
    assert sync.sync_once() is True
    assert sync.current().settings.crf == 30 and sync.interval() == 5


def test_key_rotation_reaches_new_clips_through_a_conditional_poll(tmp_path: Path, two_keys):
    old, new = two_keys
    api = FakeApi([(_document(old), '"v1"')])
    sync = SettingsSync(_config(tmp_path, key=old.to_text()), api, tmp_path / "s.json",  # type: ignore[arg-type]
                        threading.Event())
    sync.sync_once()
    for _ in range(15):                                   # no unconditional "full refresh" polls any more
        assert sync.sync_once() is False
    api.documents.append((_document(new), '"v2"'))       # the server's ETag covers the key too
    assert sync.sync_once() is True and sync.current().recipient.key_id == new.key_id
    assert api.asked_with[0] == "" and all(tag == '"v1"' for tag in api.asked_with[1:])


def test_a_document_the_agent_cannot_use_keeps_the_current_settings(tmp_path: Path, two_keys):
    api = FakeApi([(_document(two_keys[0], crf=22), '"v1"')])
    sync = SettingsSync(_config(tmp_path, key=two_keys[0].to_text()), api, tmp_path / "s.json",  # type: ignore[arg-type]
                        threading.Event())
    sync.sync_once()
    broken = _document(two_keys[0])
    broken["settings"]["crf"] = 99
    api.documents.append((broken, '"v2"'))
    assert sync.sync_once() is False and sync.current().settings.crf == 22


def test_settings_from_a_newer_server_are_used_without_the_unknown_ones(tmp_path: Path, two_keys):
    doc = _document(two_keys[0], crf=21)
    doc["settings"]["hologram_mode"] = True
    sync = SettingsSync(_config(tmp_path, key=two_keys[0].to_text()), FakeApi([(doc, '"v9"')]),  # type: ignore[arg-type]
                        tmp_path / "s.json", threading.Event())
    assert sync.sync_once() is True and sync.current().settings.crf == 21


def test_a_pinned_sync_interval_wins(tmp_path: Path, two_keys):
    sync = SettingsSync(_config(tmp_path, key=two_keys[0].to_text(), settings_sync_seconds=7), FakeApi(),  # type: ignore[arg-type]
                        tmp_path / "s.json", threading.Event())
    assert sync.interval() == 7


# -- heartbeat and uploads ---------------------------------------------------------------------------------------

def test_heartbeat_wakes_the_settings_loop_when_the_server_says_they_changed():
    api = FakeApi(beat_answer={"ok": True, "settings_changed": True})
    woken = threading.Event()
    beat = Heartbeat(api, lambda: {"source_state": "x" * 1000, "dropped_clips": 3}, lambda: 5.0,  # type: ignore[arg-type]
                     threading.Event(), woken.set)
    beat.beat_once()
    assert woken.is_set() and api.beats[0]["dropped_clips"] == 3 and len(api.beats[0]["source_state"]) == 300


def test_slot_request_carries_the_motion_summary(tmp_path: Path, two_keys):
    from cryospy.edge_agent.spool import Spool

    spool = Spool(tmp_path / "spool", 10**6)
    summary = MotionSummary(True, 0.2, (MotionInterval(0.5, 1.5, 0.2),), 1.0, 20, 0).to_dict()
    entry = SpoolEntry(0, "clips/cam/k.cse", "2026-01-01T00:00:00.000Z", 10, "ab" * 32, 2.0, True, summary)
    spool.sealed_path(entry).write_bytes(b"x" * 10)
    (spool.root / f"{entry.name}.json").write_text(json.dumps(entry.__dict__))
    api = FakeApi()
    uploader = Uploader(_config(tmp_path, key=two_keys[0].to_text()), spool, api, threading.Event(),  # type: ignore[arg-type]
                        threading.Event())
    assert uploader.upload_one(spool.entries()[0]) is True
    assert api.slots[0]["motion"] == summary and api.slots[0]["sequence"] == 0
    assert spool.entries() == []


# -- config ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "needle"), [
    ({"encoder_preset": "placebo"}, "encoder_preset"),
    ({"width": 161, "height": 96}, "odd"),
    ({"width": 160}, "go together"),
    ({"clip_seconds": 2, "keyframe_seconds": 3}, "keyframe_seconds=3"),
    ({"spool_max_megabytes": 0.01}, "spool_max_megabytes"),
    ({"loop": "yes"}, "'loop' must be true or false"),
    ({"source_retry_max_seconds": 0}, "source_retry_max_seconds"),
])
def test_new_config_keys_are_checked(tmp_path: Path, two_keys, change, needle):
    with pytest.raises(ConfigError, match=needle):
        _config(tmp_path, key=two_keys[0].to_text(), **change)


def test_recording_keys_left_out_of_the_config_follow_the_server(tmp_path: Path, two_keys):
    config = _config(tmp_path, key=two_keys[0].to_text())
    assert (config.clip_seconds, config.fps, config.width, config.crf, config.settings_sync_seconds) == (
        None, None, None, None, None)
    assert config.spool_max_bytes == 2048 * 1024 * 1024
