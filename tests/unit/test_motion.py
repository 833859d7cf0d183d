"""Unit tests for motion detection, on synthetic frames (no camera, no files).

Scenes are 320x180 at 10 fps and a few seconds long, so the file runs in seconds on a shared two-core box.
Frames come from :class:`SyntheticScene` (textured background, sensor noise, a moving ellipse, a brightness
step) or are composed here with numpy/OpenCV when a test needs something the scene cannot do (an object that
enters after a quiet lead-in, a one-frame flicker, an IR day/night flip).
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import cv2
import numpy as np
import pytest

from cryospy.common.settings import DeviceSettings
from cryospy.edge_agent.errors import AgentError
from cryospy.edge_agent.motion import (
    CryoMotionDetector,
    MotionDetector,
    MotionError,
    MotionInterval,
    MotionSummary,
    OriginalMotionDetector,
    detector_for,
)
from cryospy.edge_agent.synthetic import SyntheticScene

W, H, FPS = 320, 180, 10.0
SIZE = (W, H)
LEAD_S, CROSS_S = 2.0, 4.0
# Warm-up of one second (the default 30 frames is three seconds at this frame rate: long for unit tests).
SETTINGS = DeviceSettings(motion_warm_up_frames=10)
# Bands as normalised polygons. The object's box stays within y = 0.3..0.8 of the frame.
PATH_BAND = (((0.0, 0.25), (1.0, 0.25), (1.0, 0.85), (0.0, 0.85)),)
TOP_BAND = (((0.0, 0.0), (1.0, 0.0), (1.0, 0.2), (0.0, 0.2)),)

Frames = tuple[np.ndarray, ...]


def _scene(**kw: object) -> SyntheticScene:
    return SyntheticScene(width=W, height=H, fps=FPS, **kw)  # type: ignore[arg-type]


@cache
def _static(seconds: float = 6.0, noise: float = 2.0) -> Frames:
    scene = _scene(moving=False, noise_sigma=noise)
    return tuple(scene.frame(i) for i in range(round(seconds * FPS)))


@cache
def _moving(seconds: float = 6.0) -> Frames:
    """The object crosses again and again from the first frame on."""
    scene = _scene()
    return tuple(scene.frame(i) for i in range(round(seconds * FPS)))


@cache
def _crossing() -> Frames:
    """Quiet for LEAD_S, the object crosses once in CROSS_S, quiet for LEAD_S: motion only in [2 s, 6 s)."""
    static, moving = _scene(moving=False), _scene(crossing_seconds=CROSS_S)
    lead, cross = round(LEAD_S * FPS), round(CROSS_S * FPS)
    return (tuple(static.frame(i) for i in range(lead))
            + tuple(moving.frame(j) for j in range(cross))
            + tuple(static.frame(i) for i in range(lead + cross, 2 * lead + cross)))


@cache
def _brightness(delta: int) -> Frames:
    scene = _scene(moving=False, brightness_change_at=3.0, brightness_delta=delta)
    return tuple(scene.frame(i) for i in range(round(6 * FPS)))


@cache
def _ir_flip() -> Frames:
    """Colour by day, then at 3 s the camera switches to IR: grey, flatter and brighter."""
    out = []
    for i, frame in enumerate(_static()):
        if i >= 3 * FPS:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
            frame = cv2.cvtColor(np.clip(grey * 0.6 + 80, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        out.append(frame)
    return tuple(out)


def _with_blobs(frames: Frames, spans: list[tuple[float, float]]) -> Frames:
    """``frames`` with a bright 50x50 square (2500 px, above the 1000 px minimum) during each span.

    The square moves 8 px a frame, as something alive would: a still one would soon be learnt as background.
    """
    out = []
    for i, frame in enumerate(frames):
        t = i / FPS
        if any(a <= t < b for a, b in spans):
            frame = frame.copy()
            x = 20 + (8 * i) % (W - 90)
            cv2.rectangle(frame, (x, 70), (x + 49, 119), (250, 250, 250), -1)
        out.append(frame)
    return tuple(out)


def _run(detector: MotionDetector, frames: Frames, t0: float = 0.0) -> MotionSummary:
    for i, frame in enumerate(frames):
        detector.feed(frame, t0 + i / FPS)
    return detector.finish()


def _cryo(**changes: object) -> MotionDetector:
    return detector_for(dataclasses.replace(SETTINGS, **changes), SIZE)


def _overlap(interval: MotionInterval, a: float, b: float) -> float:
    return max(0.0, min(interval.end_s, b) - max(interval.start_s, a))


# --- verdicts of our detector -----------------------------------------------------------------------------

@pytest.mark.parametrize("detect_width", [160, 320])
def test_moving_object_is_motion_while_it_is_in_view(detect_width: int) -> None:
    summary = _run(_cryo(motion_detect_width=detect_width), _crossing())
    assert summary.motion
    assert 0 < summary.score <= 1
    assert summary.frames_analysed == len(_crossing())
    # Motion is reported while the object crosses (2..6 s) and not in the quiet lead-in or tail.
    assert all(LEAD_S - 0.2 <= i.start_s < i.end_s <= LEAD_S + CROSS_S + 0.3 for i in summary.intervals)
    covered = sum(_overlap(i, LEAD_S, LEAD_S + CROSS_S) for i in summary.intervals)
    assert covered >= 0.75 * CROSS_S
    # The thumbnail moment lies in an interval and shows the object.
    assert summary.peak_s is not None
    assert any(i.start_s <= summary.peak_s < i.end_s for i in summary.intervals)
    assert max(i.peak_score for i in summary.intervals) == summary.score
    box = _scene(crossing_seconds=CROSS_S).object_box(round((summary.peak_s - LEAD_S) * FPS))
    assert box is not None and -box[2] < box[0] < W   # some of it is in the frame


def test_static_scene_with_sensor_noise_is_not_motion() -> None:
    for noise in (2.0, 4.0):
        summary = _run(_cryo(), _static(noise=noise))
        assert summary == MotionSummary(False, 0.0, (), None, len(_static(noise=noise)), 0)


@pytest.mark.parametrize("frames", [
    pytest.param(lambda: _brightness(60), id="lights-on"),
    pytest.param(lambda: _brightness(-60), id="lights-off"),
    pytest.param(_ir_flip, id="ir-flip"),
])
def test_global_change_is_suppressed_not_motion(frames) -> None:  # type: ignore[no-untyped-def]
    summary = _run(_cryo(), frames())
    assert not summary.motion
    assert summary.intervals == () and summary.peak_s is None and summary.score == 0
    assert summary.suppressed_global_changes >= 1


def test_motion_after_a_light_switch_is_still_seen() -> None:
    """The guard re-learns the background quickly instead of going blind for the rest of the clip."""
    static, moving = _brightness(60), _scene(crossing_seconds=2.0, brightness_change_at=0.0)
    frames = static + tuple(moving.frame(j) for j in range(round(2 * FPS)))
    summary = _run(_cryo(), frames)
    assert summary.suppressed_global_changes == 1
    assert summary.motion and summary.intervals[0].start_s >= 6.0


@pytest.mark.parametrize(("zones", "masks", "motion"), [
    ((), PATH_BAND, False),          # the object's whole path is masked
    (TOP_BAND, (), False),           # the only zone is away from the path
    (PATH_BAND, (), True),           # the zone covers the path
    (PATH_BAND + TOP_BAND, PATH_BAND, False),   # masks win over zones
])
def test_zones_and_masks(zones, masks, motion: bool) -> None:  # type: ignore[no-untyped-def]
    summary = _run(_cryo(motion_zones=zones, motion_masks=masks), _crossing())
    assert summary.motion is motion
    assert (summary.score > 0) is motion


def test_score_is_relative_to_the_watched_area() -> None:
    """The same object fills a larger share of a smaller zone."""
    whole = _run(_cryo(), _crossing())
    band = _run(_cryo(motion_zones=PATH_BAND), _crossing())
    assert band.score > whole.score


def test_zones_that_leave_nothing_to_watch_are_an_error() -> None:
    with pytest.raises(MotionError, match="nothing to watch"):
        _cryo(motion_zones=TOP_BAND, motion_masks=TOP_BAND)


def test_one_frame_flicker_is_not_motion() -> None:
    flicker = _with_blobs(_static(), [(3.0, 3.0 + 1 / FPS)])
    assert not _run(_cryo(motion_min_seconds=0.5), flicker).motion
    # Control: the blob is big enough to count; only the minimum duration removes it.
    control = _run(_cryo(motion_min_seconds=0.0), flicker)
    assert control.motion and len(control.intervals) == 1
    assert control.intervals[0].start_s == pytest.approx(3.0)


def test_runs_closer_than_a_second_merge_and_farther_ones_do_not() -> None:
    near = _run(_cryo(), _with_blobs(_static(), [(1.5, 2.5), (3.0, 4.0)]))
    assert [(round(i.start_s, 1), round(i.end_s, 1)) for i in near.intervals] == [(1.5, 4.0)]
    far = _run(_cryo(), _with_blobs(_static(), [(1.5, 2.5), (4.0, 5.0)]))
    assert [(round(i.start_s, 1), round(i.end_s, 1)) for i in far.intervals] == [(1.5, 2.5), (4.0, 5.0)]


def test_background_model_survives_clips_so_there_is_no_warm_up_blind_spot() -> None:
    detector = _cryo()
    assert not _run(detector, _static(2.0)).motion
    second = _run(detector, _moving(4.0)[10:30])   # the object is in view from the clip's first frame
    assert second.motion and second.intervals[0].start_s == 0.0


def test_motion_continuing_from_the_previous_clip_counts_its_earlier_part() -> None:
    """0.3 s at the end of one clip plus 0.3 s at the start of the next is 0.6 s of motion, not two flickers."""
    detector = _cryo(motion_min_seconds=0.5)
    frames = _with_blobs(_static(4.0), [(1.7, 2.3)])
    first = _run(detector, frames[:20])
    second = _run(detector, frames[20:])
    assert not first.motion   # 0.3 s so far: the first clip cannot know it will go on
    assert second.motion and second.intervals[0].start_s == 0.0


def test_summary_to_dict_is_json_ready() -> None:
    summary = _run(_cryo(), _crossing())
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["motion"] is True
    assert data["frames_analysed"] == len(_crossing())
    assert data["peak_s"] == pytest.approx(summary.peak_s, abs=1e-3)
    assert data["intervals"][0]["start_s"] == pytest.approx(summary.intervals[0].start_s, abs=1e-3)
    quiet = _run(_cryo(), _static()).to_dict()
    assert quiet["peak_s"] is None and quiet["intervals"] == [] and quiet["score"] == 0


# --- the original's algorithm, for comparison ------------------------------------------------------------

def _original() -> OriginalMotionDetector:
    return OriginalMotionDetector.from_settings(SETTINGS, SIZE)


def test_original_gives_the_same_verdicts_on_moving_and_static_scenes() -> None:
    assert _run(_original(), _moving()).motion is _run(_cryo(), _moving()).motion is True
    assert _run(_original(), _static()).motion is _run(_cryo(), _static()).motion is False


def test_original_calls_a_light_switch_motion() -> None:
    """What the original really does: the brightness step passes its gate and fills the frame with one blob."""
    summary = _run(_original(), _brightness(60))
    assert summary.motion and summary.score > 0.9
    assert summary.intervals[0].start_s == pytest.approx(3.0)
    assert summary.suppressed_global_changes == 0


def test_original_misses_an_object_entering_after_warm_up_at_low_resolution() -> None:
    """Its 5000-pixel frame-difference gate is absolute: at 320x180 a person-sized object moving at a walking
    pace changes about 1100 pixels per frame and never opens the gate. (The moving scene above is caught only
    because the object is already there on the first frame after warm-up, which is not gated.)"""
    assert not _run(_original(), _crossing()).motion
    assert _run(_cryo(), _crossing()).motion


def test_original_stops_at_the_first_motion_and_starts_afresh_each_clip() -> None:
    detector = _original()
    first = _run(detector, _moving())
    assert first.motion and len(first.intervals) == 1
    assert first.frames_analysed == SETTINGS.motion_warm_up_frames + 1   # the first analysed frame hit
    # A fresh model and warm-up for the next clip: nothing before the warm-up ends.
    second = _run(detector, _moving())
    assert second.intervals[0].start_s == pytest.approx(SETTINGS.motion_warm_up_frames / FPS)


# --- failures are errors, never motion -------------------------------------------------------------------

GOOD = np.zeros((H, W, 3), np.uint8)


@pytest.mark.parametrize(("frame", "t", "message"), [
    (GOOD.astype(np.float32), None, "dtype"),
    (GOOD.astype(np.uint16), None, "dtype"),
    (np.zeros((H, W, 2), np.uint8), None, "shape"),
    (np.zeros((H, W, 4), np.uint8), None, "shape"),
    (np.zeros(W * H, np.uint8), None, "shape"),
    (np.zeros((H // 2, W // 2, 3), np.uint8), None, "built for"),
    (GOOD.tolist(), None, "numpy array"),
    (GOOD, float("nan"), "finite"),
    (GOOD, -1.0, "finite"),
])
@pytest.mark.parametrize("make", [_cryo, _original], ids=["cryo", "original"])
def test_bad_input_raises_motion_error(make, frame, t, message: str) -> None:  # type: ignore[no-untyped-def]
    detector = make()
    for i, good in enumerate(_moving(3.0)):
        detector.feed(good, i / FPS)
    with pytest.raises(MotionError, match=message):
        detector.feed(frame, 3.0 if t is None else t)   # None: the next frame's offset
    # The clip's verdict cannot be trusted any more, even though the object was in view.
    with pytest.raises(MotionError, match="could not be analysed"):
        detector.finish()
    # The next clip is analysed normally.
    assert _run(detector, _moving(3.0)).motion


def test_time_going_backwards_is_an_error() -> None:
    detector = _cryo()
    detector.feed(GOOD, 1.0)
    with pytest.raises(MotionError, match="back in time"):
        detector.feed(GOOD, 0.5)


def test_opencv_failure_is_a_motion_error(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = _cryo()
    frames = _moving(3.0)
    for i, frame in enumerate(frames[:20]):
        detector.feed(frame, i / FPS)

    def broken(*args: object, **kwargs: object) -> None:
        raise cv2.error("simulated failure")

    monkeypatch.setattr(cv2, "findContours", broken)
    with pytest.raises(MotionError, match="OpenCV failed") as info:
        detector.feed(frames[20], 2.0)
    assert isinstance(info.value, AgentError) and isinstance(info.value.__cause__, cv2.error)
    with pytest.raises(MotionError):
        detector.finish()


@pytest.mark.parametrize("make", [_cryo, _original], ids=["cryo", "original"])
def test_finish_without_frames_is_an_error(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MotionError, match="no frames"):
        make().finish()


def test_grey_frames_are_accepted() -> None:
    grey = tuple(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in _crossing())
    assert _run(CryoMotionDetector(SIZE, warm_up_frames=10), grey).motion
