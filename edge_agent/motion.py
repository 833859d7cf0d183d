"""Motion detection for the edge agent: the original's algorithm, and a cheaper one with fewer false alarms.

A detector is fed a clip's frames one by one and summarises the clip at the end (:class:`MotionSummary`):
whether there was motion, a score, the intervals (offsets in the clip) and the strongest moment, which the
agent uses for the thumbnail, for ``motion_only`` context and for the event index. Clips are recorded back to
back, so a detector keeps its background model from one clip to the next; only the per-clip bookkeeping is
reset by :meth:`MotionDetector.finish`.

Two implementations:

* :class:`OriginalMotionDetector` reproduces the original client (full-resolution grey, 21x21 blur, MOG2, a
  5000-pixel frame-difference gate, dilate, contour filters, stop at the first passing contour, a fresh model
  and warm-up per clip). It exists for compatibility checks and as the benchmark baseline, not for use.
* :class:`CryoMotionDetector` (what :func:`detector_for` builds) works on a downscaled grey copy, honours zones
  and masks, refuses to call a light switch or an IR day/night flip "motion", and requires motion to last
  ``motion_min_seconds`` so that a single noisy frame, an insect or a raindrop does not raise an alarm.

The original treated a detector failure as motion, which hides a broken camera behind a stream of alarms.
Here every failure raises :class:`MotionError`; :meth:`MotionDetector.finish` raises too if any frame of the
clip failed, so a caller that ignored a ``feed`` error still cannot mistake a partial analysis for a verdict.

Errors::

    AgentError
    └── MotionError     bad frame (type, shape, size), bad timestamp, an OpenCV failure, unusable zones
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from cryospy.common.settings import DeviceSettings, Polygon

from .errors import AgentError

__all__ = [
    "CryoMotionDetector", "MotionDetector", "MotionError", "MotionInterval", "MotionSummary",
    "OriginalMotionDetector", "detector_for",
]

# The original's fixed constants (motiondetector.go); named so the baseline reads like the reference.
_ORIG_BLUR = 21
_ORIG_DIFF_THRESHOLD = 25
_ORIG_GATE_PIXELS = 5000
_FG_THRESHOLD = 25

# Frames of a run this close together (seconds) belong to the same run: one missed frame, at any usual frame
# rate, must not split a walking person into two short runs that the minimum duration would then drop.
_BRIDGE_S = 0.25


class MotionError(AgentError):
    """The detector could not analyse a frame or a clip; never to be read as "motion" or "no motion"."""


@dataclass(frozen=True)
class MotionInterval:
    """A stretch of a clip with motion: offsets in seconds from the clip's first frame, end exclusive."""

    start_s: float
    end_s: float
    peak_score: float


@dataclass(frozen=True)
class MotionSummary:
    """The verdict on one clip.

    ``score`` is the peak, over the kept intervals, of the fraction of the watched area (zones minus masks)
    covered by moving blobs that passed the filters; 0 when there is no motion. ``peak_s`` is the offset of
    that frame (a thumbnail shows the motion, not an empty room). ``suppressed_global_changes`` counts light
    switches and IR flips that were not reported as motion, so a dashboard can show why a clip is quiet.
    """

    motion: bool
    score: float
    intervals: tuple[MotionInterval, ...]
    peak_s: float | None
    frames_analysed: int
    suppressed_global_changes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the slot request and the sealed metadata (milliseconds are precision enough)."""
        return {
            "motion": self.motion,
            "score": round(self.score, 4),
            "intervals": [
                {"start_s": round(i.start_s, 3), "end_s": round(i.end_s, 3), "peak_score": round(i.peak_score, 4)}
                for i in self.intervals
            ],
            "peak_s": None if self.peak_s is None else round(self.peak_s, 3),
            "frames_analysed": self.frames_analysed,
            "suppressed_global_changes": self.suppressed_global_changes,
        }


class MotionDetector(Protocol):
    """What the recorder needs: frames in, one summary per clip out."""

    def feed(self, frame: np.ndarray, t: float) -> None:
        """Analyse one frame; ``t`` is its offset in seconds within the clip (non-decreasing)."""
        ...

    def finish(self) -> MotionSummary:
        """Summarise the clip and get ready for the next one (the background model is kept)."""
        ...


@dataclass
class _Run:
    """Consecutive moving frames, before the minimum-duration and merge rules are applied."""

    start: float
    last: float
    peak: float
    peak_t: float
    carried_s: float = 0.0   # duration of the same run at the end of the previous clip


@dataclass
class _Clip:
    """Per-clip bookkeeping; replaced wholesale by finish()."""

    frames: int = 0
    failures: int = 0
    first_error: str = ""
    last_t: float | None = None
    dt: float = 0.0
    runs: list[_Run] = field(default_factory=list)
    suppressed: int = 0


def _check_frame(frame: object, size: tuple[int, int]) -> np.ndarray:
    """The frame as a uint8 array, or MotionError naming what is wrong with it."""
    if not isinstance(frame, np.ndarray):
        raise MotionError(f"frame is a {type(frame).__name__}, not a numpy array; pass the decoded image")
    if frame.dtype != np.uint8:
        raise MotionError(f"frame dtype is {frame.dtype}, expected uint8; convert with frame.astype(np.uint8) "
                          "only if the values are already 0..255")
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3))):
        raise MotionError(f"frame shape {frame.shape} is neither grey (H, W) nor BGR (H, W, 3)")
    if (frame.shape[1], frame.shape[0]) != size:
        raise MotionError(f"frame is {frame.shape[1]}x{frame.shape[0]} but the detector was built for "
                          f"{size[0]}x{size[1]}; build a new detector when the camera's resolution changes")
    return frame


def _check_t(t: float, last_t: float | None) -> float:
    if not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise MotionError(f"frame offset t={t!r} must be a finite number of seconds >= 0")
    if last_t is not None and t < last_t:
        raise MotionError(f"frame offset t={t} goes back in time (previous {last_t}); offsets restart only "
                          "after finish()")
    return float(t)


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return frame.reshape(frame.shape[0], frame.shape[1])


def _passes(w: int, h: int, area: float, min_area: float, min_w: float, min_h: float,
            min_aspect: float, max_aspect: float) -> bool:
    """The original's blob filter: big enough, wide and tall enough, and not a sliver."""
    return area >= min_area and w >= min_w and h >= min_h and min_aspect <= w / h <= max_aspect


class OriginalMotionDetector:
    """The original client's algorithm, step for step (see the module docstring); a baseline, not a choice.

    Faithful where it matters for comparison: a new MOG2 model and warm-up for every clip, at most
    ``max_frames`` frames per clip (warm-up included), and detection stops at the first passing contour, so
    the summary has one single-frame interval at most. Unlike the original, an error raises instead of
    counting as motion.
    """

    def __init__(self, frame_size: tuple[int, int], *, history: int = 500, var_threshold: float = 16.0,
                 warm_up_frames: int = 30, max_frames: int = 300, min_area: int = 1000, min_width: int = 20,
                 min_height: int = 20, min_aspect: float = 0.3, max_aspect: float = 3.0) -> None:
        self._size = frame_size
        self._history, self._var = history, var_threshold
        self._warm_up, self._max_frames = warm_up_frames, max_frames
        self._filters = (min_area, min_width, min_height, min_aspect, max_aspect)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
        self._new_clip()

    @classmethod
    def from_settings(cls, settings: DeviceSettings, frame_size: tuple[int, int]) -> OriginalMotionDetector:
        return cls(frame_size, history=settings.motion_mog_history, var_threshold=settings.motion_mog_var_thresh,
                   warm_up_frames=settings.motion_warm_up_frames, max_frames=settings.motion_max_frames,
                   min_area=settings.motion_min_area, min_width=settings.motion_min_width,
                   min_height=settings.motion_min_height, min_aspect=settings.motion_min_aspect,
                   max_aspect=settings.motion_max_aspect)

    def _new_clip(self) -> None:
        self._mog = cv2.createBackgroundSubtractorMOG2(self._history, self._var, False)
        self._clip = _Clip()
        self._prev: np.ndarray | None = None
        self._hit: tuple[float, float] | None = None   # (t, score) of the first passing contour

    def feed(self, frame: np.ndarray, t: float) -> None:
        clip = self._clip
        try:
            frame = _check_frame(frame, self._size)
            t = _check_t(t, clip.last_t)
        except MotionError as exc:
            clip.failures += 1
            clip.first_error = clip.first_error or str(exc)
            raise
        if clip.last_t is not None and t > clip.last_t:
            clip.dt = t - clip.last_t
        clip.last_t = t
        if self._hit is not None or clip.frames >= self._max_frames:
            return
        clip.frames += 1
        try:
            self._analyse(frame, t)
        except cv2.error as exc:
            clip.failures += 1
            clip.first_error = clip.first_error or f"OpenCV failed: {exc}"
            raise MotionError(f"OpenCV failed on the frame at {t:.3f}s: {exc}") from exc

    def _analyse(self, frame: np.ndarray, t: float) -> None:
        blur = cv2.GaussianBlur(_grey(frame), (_ORIG_BLUR, _ORIG_BLUR), 0)
        fg = self._mog.apply(blur)
        if self._clip.frames <= self._warm_up:
            return
        prev, self._prev = self._prev, blur
        if prev is not None:
            _, changed = cv2.threshold(cv2.absdiff(blur, prev), _ORIG_DIFF_THRESHOLD, 255, cv2.THRESH_BINARY)
            if cv2.countNonZero(changed) < _ORIG_GATE_PIXELS:
                return
        _, fg = cv2.threshold(fg, _FG_THRESHOLD, 255, cv2.THRESH_BINARY)
        fg = cv2.dilate(fg, self._kernel)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            _, _, w, h = cv2.boundingRect(contour)
            area = cv2.contourArea(contour)
            if _passes(w, h, area, *self._filters):
                self._hit = (t, min(1.0, area / (self._size[0] * self._size[1])))
                return

    def finish(self) -> MotionSummary:
        clip, hit = self._clip, self._hit
        self._new_clip()
        if clip.failures:
            raise MotionError(f"{clip.failures} frame(s) of this clip could not be analysed, first: "
                              f"{clip.first_error}")
        if clip.frames == 0:
            raise MotionError("finish() with no frames fed: there is nothing to summarise")
        if hit is None:
            return MotionSummary(False, 0.0, (), None, clip.frames, 0)
        t, score = hit
        return MotionSummary(True, score, (MotionInterval(t, t + clip.dt, score),), t, clip.frames, 0)


def _raster(polygons: tuple[Polygon, ...], size: tuple[int, int]) -> np.ndarray:
    """Fill normalised polygons into a uint8 mask of ``size`` (sub-pixel vertices, so small zones stay put)."""
    w, h = size
    out = np.zeros((h, w), np.uint8)
    shift = 4
    pts = [np.array([[round(x * w * (1 << shift)), round(y * h * (1 << shift))] for x, y in poly], np.int32)
           for poly in polygons]
    if pts:
        cv2.fillPoly(out, pts, 255, cv2.LINE_8, shift)
    return out


class CryoMotionDetector:
    """CryoSpy's detector: the original's MOG2 idea, made cheaper and harder to fool.

    * Works on a grey copy ``detect_width`` pixels wide (INTER_AREA averages away sensor noise as it shrinks),
      with a blur equivalent to the original's 21x21 at camera resolution; the blob filters are given in
      camera pixels, as in the settings, and scaled here.
    * Zones (only motion inside counts; none = the whole frame) and masks (ignored; masks win) are rasterised
      once, at construction, for the detection size.
    * Global-change guard: when more than ``global_fraction`` of the frame turns foreground, or the mean
      brightness jumps by more than ``brightness_jump`` grey levels from one frame to the next, the frame is a
      light switch or an IR day/night flip, not motion. The background is rebuilt from the new frame and
      learnt fast for ``relearn_frames`` frames, during which nothing is reported. The price: something that
      fills most of the frame at once (a hand over the lens, a truck right in front) is suppressed too; that
      is tampering, for the heartbeat to report, not motion.
    * Runs of moving frames shorter than ``min_seconds`` are dropped (flicker, insects, rain); runs less than
      ``merge_gap_s`` apart are merged into one interval. A run still going when a clip ends lends its length
      to the run that opens the next clip, so motion across a clip boundary is not cut into two short runs.

    The first ``warm_up_frames`` after construction only train the model. The model then lives across clips
    (clips are back to back), so unlike the original there is no blind warm-up at the start of every clip, and
    every frame fed is analysed (the original stopped after ``motion_max_frames``, missing motion later on).
    """

    def __init__(self, frame_size: tuple[int, int], *, detect_width: int = 320, history: int = 500,
                 var_threshold: float = 16.0, warm_up_frames: int = 30, min_area: int = 1000, min_width: int = 20,
                 min_height: int = 20, min_aspect: float = 0.3, max_aspect: float = 3.0,
                 zones: tuple[Polygon, ...] = (), masks: tuple[Polygon, ...] = (), min_seconds: float = 0.5,
                 merge_gap_s: float = 1.0, global_fraction: float = 0.6, brightness_jump: float = 20.0,
                 relearn_frames: int = 5, on_motion: Callable[[float], None] | None = None) -> None:
        fw, fh = frame_size
        if fw < 1 or fh < 1:
            raise MotionError(f"frame size {fw}x{fh} is empty; pass the camera's (width, height)")
        if detect_width < 16:
            raise MotionError(f"detect_width={detect_width} is too small to see anything; use 80 or more")
        dw = min(detect_width, fw)   # never upscale: it costs and adds nothing
        dh = max(1, round(fh * dw / fw))
        s = dw / fw
        self._size, self._dsize = (fw, fh), (dw, dh)
        # The original's 21x21 kernel spans 21 camera pixels; the same span at this scale, odd, at least 3.
        k = max(3, round(_ORIG_BLUR * s) | 1)
        self._blur = (k, k)
        # Areas scale with the square of the linear factor; never below one pixel, or the filter disappears.
        self._filters = (max(1.0, min_area * s * s), max(1.0, min_width * s), max(1.0, min_height * s),
                         min_aspect, max_aspect)
        self._history, self._var = history, var_threshold
        self._warm_up = warm_up_frames
        self._min_seconds, self._merge_gap = min_seconds, merge_gap_s
        self._global_fraction, self._brightness_jump = global_fraction, brightness_jump
        self._relearn_frames = relearn_frames
        self._kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
        active = _raster(zones, self._dsize) if zones else np.full((dh, dw), 255, np.uint8)
        if masks:
            active = cv2.bitwise_and(active, cv2.bitwise_not(_raster(masks, self._dsize)))
        self._active_area = cv2.countNonZero(active)
        if self._active_area == 0:
            raise MotionError("the motion zones and masks leave nothing to watch at the detection size; "
                              "widen a zone, remove a mask or raise motion_detect_width")
        self._active = None if self._active_area == dw * dh else active
        self._mog = cv2.createBackgroundSubtractorMOG2(history, var_threshold, False)
        self._trained = 0            # frames the model has seen since it was created
        self._relearn_left = 0       # frames still to learn fast after a global change
        self._prev_mean: float | None = None
        self._carry_s = 0.0          # a run still open at the end of the previous clip, and its length
        self._clip = _Clip()
        # Told the score of every moving frame as it is analysed (real-time events, edge_agent/live_events.py);
        # must not block: it runs on the capture thread.
        self._on_motion = on_motion

    def feed(self, frame: np.ndarray, t: float) -> None:
        clip = self._clip
        try:
            frame = _check_frame(frame, self._size)
            t = _check_t(t, clip.last_t)
            self._analyse(frame, t)
        except MotionError as exc:
            clip.failures += 1
            clip.first_error = clip.first_error or str(exc)
            raise
        except cv2.error as exc:
            clip.failures += 1
            clip.first_error = clip.first_error or f"OpenCV failed: {exc}"
            raise MotionError(f"OpenCV failed on the frame at {t}s: {exc}; check the frames the source "
                              "delivers") from exc

    def _small(self, frame: np.ndarray) -> np.ndarray:
        grey = _grey(frame)
        if self._dsize != self._size:
            grey = cv2.resize(grey, self._dsize, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(grey, self._blur, 0)

    def _analyse(self, frame: np.ndarray, t: float) -> None:
        clip = self._clip
        if clip.last_t is not None and t > clip.last_t:
            clip.dt = t - clip.last_t
        clip.last_t = t
        clip.frames += 1
        small = self._small(frame)
        mean = float(cv2.mean(small)[0])
        prev_mean, self._prev_mean = self._prev_mean, mean
        if self._trained == 0:
            # The first frame is the background by definition; MOG2 would otherwise call it all foreground.
            self._mog.apply(small, learningRate=1.0)
            self._trained = 1
            return
        rate = 0.5 if self._relearn_left else -1.0
        fg = self._mog.apply(small, learningRate=rate)
        self._trained += 1
        fraction = cv2.countNonZero(fg) / fg.size
        jump = prev_mean is not None and abs(mean - prev_mean) > self._brightness_jump
        if fraction > self._global_fraction or jump:
            # Rebuild the background from this frame; one light switch may take several frames to settle
            # (auto exposure), which only extends the relearning, it does not count twice.
            self._mog.apply(small, learningRate=1.0)
            if not self._relearn_left:
                clip.suppressed += 1
            self._relearn_left = self._relearn_frames
            return
        if self._relearn_left:
            self._relearn_left -= 1
            return
        if self._trained <= self._warm_up:
            return
        fg = cv2.dilate(fg, self._kernel)
        if self._active is not None:
            fg = cv2.bitwise_and(fg, self._active)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        moving = 0.0
        for contour in contours:
            _, _, w, h = cv2.boundingRect(contour)
            area = cv2.contourArea(contour)
            if _passes(w, h, area, *self._filters):
                moving += area
        if moving > 0:
            self._record(t, min(1.0, moving / self._active_area))

    def _record(self, t: float, score: float) -> None:
        if self._on_motion is not None:
            self._on_motion(score)
        runs = self._clip.runs
        if runs and t - runs[-1].last <= _BRIDGE_S:
            run = runs[-1]
            run.last = t
            if score > run.peak:
                run.peak, run.peak_t = score, t
            return
        # A run that starts with the clip may be the continuation of one left open by the previous clip.
        carried = self._carry_s if not runs and t <= _BRIDGE_S else 0.0
        runs.append(_Run(t, t, score, t, carried))

    def finish(self) -> MotionSummary:
        clip = self._clip
        self._clip = _Clip()
        last = clip.runs[-1] if clip.runs else None
        open_at_end = last is not None and clip.last_t is not None and clip.last_t - last.last <= _BRIDGE_S
        self._carry_s = last.carried_s + (last.last + clip.dt - last.start) if open_at_end and last else 0.0
        if clip.failures:
            raise MotionError(f"{clip.failures} frame(s) of this clip could not be analysed, first: "
                              f"{clip.first_error}")
        if clip.frames == 0:
            raise MotionError("finish() with no frames fed: there is nothing to summarise")
        kept = [r for r in clip.runs if r.carried_s + (r.last + clip.dt - r.start) >= self._min_seconds]
        merged: list[_Run] = []
        for run in kept:
            if merged and run.start - (merged[-1].last + clip.dt) < self._merge_gap:
                prev = merged[-1]
                prev.last = run.last
                if run.peak > prev.peak:
                    prev.peak, prev.peak_t = run.peak, run.peak_t
            else:
                merged.append(_Run(run.start, run.last, run.peak, run.peak_t))
        intervals = tuple(MotionInterval(r.start, r.last + clip.dt, r.peak) for r in merged)
        best = max(merged, key=lambda r: r.peak, default=None)
        return MotionSummary(
            motion=best is not None,
            score=best.peak if best else 0.0,
            intervals=intervals,
            peak_s=best.peak_t if best else None,
            frames_analysed=clip.frames,
            suppressed_global_changes=clip.suppressed,
        )


def detector_for(settings: DeviceSettings, frame_size: tuple[int, int],
                 on_motion: Callable[[float], None] | None = None) -> MotionDetector:
    """The detector the agent runs for a camera of ``frame_size`` (width, height) under ``settings``;
    ``on_motion`` hears each moving frame's score as it happens."""
    return CryoMotionDetector(
        frame_size,
        detect_width=settings.motion_detect_width,
        history=settings.motion_mog_history,
        var_threshold=settings.motion_mog_var_thresh,
        warm_up_frames=settings.motion_warm_up_frames,
        min_area=settings.motion_min_area,
        min_width=settings.motion_min_width,
        min_height=settings.motion_min_height,
        min_aspect=settings.motion_min_aspect,
        max_aspect=settings.motion_max_aspect,
        zones=settings.motion_zones,
        masks=settings.motion_masks,
        min_seconds=settings.motion_min_seconds,
        on_motion=on_motion,
    )
