"""The capture loop: frames in, back-to-back clips out, with motion analysed on every frame.

What happens to one frame: it is read from the source, placed on the clip's constant-rate timeline
(:mod:`.framerate`), fed once to the motion detector and piped to ffmpeg as many times as it fills slots.
When a clip has its frames, the encoder (still finishing in its ffmpeg process) and the motion summary are
handed to the finisher, and the very next frame starts the next clip: the capture thread never waits for
encoding tails, sealing or disk syncs, so no frame is lost between clips.

Why these choices:

* each clip takes one settings snapshot at its first frame (:class:`.plan.RecordingPlan`), so settings
  synced meanwhile apply from the next clip and a clip is always internally consistent;
* the motion detector lives across clips (its background model is what makes it cheap and accurate) and
  is rebuilt only when the frame size or a motion setting changes, or after it failed;
* a detector error never becomes a verdict: the clip is kept and flagged, and ``motion_state`` says so;
* capture time: the UTC wall clock when the clip's first frame arrived. Duration: frames / fps as encoded,
  which the constant-rate timeline makes equal to the wall time the clip covers;
* a source that fails is reopened with exponential backoff (capped by ``source_retry_max_seconds``); the
  partial clip it leaves is kept. ``source_state`` is what the heartbeat reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from cryospy.common.ffmpeg_tool import FfmpegError

from .config import AgentConfig
from .encoder import ClipEncoder
from .errors import SourceError
from .framerate import FrameClock
from .motion import MotionDetector, MotionError, MotionSummary, detector_for
from .plan import RecordingPlan, planned_fps
from .recorded import RecordedClip
from .settings_sync import SettingsSnapshot
from .sources import FrameSource, OpenCvSource, SourceEnded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Arrival:
    frame: np.ndarray
    copies: int          # slots still to fill with this frame
    utc: datetime        # wall-clock time of its first remaining slot
    stalled: bool        # a gap came before it: it must start a new clip


class Recorder:
    def __init__(self, config: AgentConfig, settings: Callable[[], SettingsSnapshot],
                 open_source: Callable[[float], FrameSource], handoff: Callable[[RecordedClip], None],
                 scratch: Path, stop: threading.Event, *,
                 utc: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic, max_gap_s: float = 2.0,
                 on_motion: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.open_source = open_source
        self.handoff = handoff
        self.scratch = scratch
        self.stop = stop
        self.utc = utc
        self.monotonic = monotonic
        self.max_gap_s = max_gap_s
        self.on_motion = on_motion   # each moving frame's score, as it is analysed (real-time events)
        self.source_state = "starting"
        self.motion_state = "ok"
        self.capture = ""           # what a camera device granted (size, rate, FourCC), for the heartbeat
        self.clips = 0
        self._detector: MotionDetector | None = None
        self._detector_key: tuple[object, ...] | None = None
        self._keep_going: Callable[[], bool] = lambda: True

    # -- the source loop ------------------------------------------------------------------------------
    def run(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Record until stop, or until ``keep_going()`` turns false (checked between clips)."""
        self._keep_going = keep_going
        backoff = 1.0
        while not self.stop.is_set() and keep_going():
            fps = planned_fps(self.settings(), self.config)
            try:
                source = self.open_source(fps)
            except SourceError as exc:
                backoff = self._retry_later(f"unavailable: {exc}", backoff)
                continue
            self.source_state = "ok"
            self.capture = source.granted if isinstance(source, OpenCvSource) else ""
            clips_before = self.clips
            try:
                self._session(source, fps)
            except SourceEnded as exc:
                self.source_state = f"ended: {exc}"
                log.info("%s; recording stops, uploads go on", exc)
                return
            except SourceError as exc:
                if self.clips > clips_before:
                    backoff = 1.0      # it worked for a while: this is a new failure, not the same one
                backoff = self._retry_later(f"lost: {exc}", backoff)
            except Exception:
                log.exception("the capture loop failed unexpectedly; reopening the source")
                backoff = self._retry_later("error: unexpected failure (see the agent log)", backoff)
            finally:
                source.close()

    def _retry_later(self, state: str, backoff: float) -> float:
        self.source_state = f"{state}; retrying in {backoff:.0f}s"
        log.warning("camera source %s", self.source_state)
        self.stop.wait(backoff)
        return min(self.config.source_retry_max_seconds, backoff * 2)

    def _arrivals(self, source: FrameSource, clock: FrameClock) -> Iterator[_Arrival]:
        while True:
            frame = source.read()
            placed = clock.place(self.monotonic())
            if placed.copies:
                yield _Arrival(frame, placed.copies, self.utc(), placed.stalled)

    def _session(self, source: FrameSource, fps: float) -> None:
        """Record clips from one open source until stop, a settings change of rate, or a SourceError."""
        arrivals = self._arrivals(source, FrameClock(fps, self.max_gap_s))
        pending: _Arrival | None = None
        while not self.stop.is_set() and self._keep_going():
            first = pending or next(arrivals)
            pending = None
            plan = RecordingPlan.build(self.settings(), self.config, (first.frame.shape[1], first.frame.shape[0]))
            if plan.fps != fps:
                log.info("capture rate changed from %g to %g fps; reopening the source", fps, plan.fps)
                return
            try:
                pending = self._record_clip(plan, first, arrivals)
            except FfmpegError as exc:
                log.error("a clip was lost because the encoder failed: %s", exc)

    # -- one clip -------------------------------------------------------------------------------------
    def _record_clip(self, plan: RecordingPlan, first: _Arrival, arrivals: Iterator[_Arrival]) -> _Arrival | None:
        """Fill one clip; returns what is left of the last frame (or the frame after a stall) for the next."""
        detector, motion_error = self._detector_for(plan)
        encoder = ClipEncoder(self.scratch / f"clip-{self.clips:06d}.mp4", plan.encode)
        want, written, item = plan.frames_per_clip, 0, first
        # motion_max_frames caps the analysis per clip: frames are sampled evenly, never cut off at the end.
        stride, distinct = -(-want // plan.settings.motion_max_frames), 0
        try:
            while True:
                if item.stalled and written:
                    return item
                if detector is not None and motion_error is None and distinct % stride == 0:
                    try:
                        detector.feed(item.frame, written / plan.fps)
                    except MotionError as exc:
                        motion_error = str(exc)
                distinct += 1
                n = min(item.copies, want - written)
                for _ in range(n):
                    encoder.write(item.frame)
                written += n
                if item.copies > n:
                    return _Arrival(item.frame, item.copies - n, item.utc + timedelta(seconds=n / plan.fps), False)
                if written >= want or self.stop.is_set():
                    return None
                item = next(arrivals)
        except SourceError:
            raise                      # the finally below keeps the partial clip
        except BaseException:
            encoder.abort()
            written = 0
            raise
        finally:
            if written:
                self._hand_off(encoder, plan, first.utc, written, detector, motion_error)

    def _detector_for(self, plan: RecordingPlan) -> tuple[MotionDetector | None, str | None]:
        key = plan.motion_key()
        if self._detector is None or key != self._detector_key:
            try:
                self._detector = detector_for(plan.settings, plan.frame_size, self.on_motion)
            except MotionError as exc:
                self._detector = None
                return None, str(exc)
            self._detector_key = key
        return self._detector, None

    def _hand_off(self, encoder: ClipEncoder, plan: RecordingPlan, captured_at: datetime, frames: int,
                  detector: MotionDetector | None, motion_error: str | None) -> None:
        summary: MotionSummary | None = None
        if detector is not None:
            try:
                summary = detector.finish()
            except MotionError as exc:
                motion_error = motion_error or str(exc)
        if motion_error is not None:
            summary = None
            self._detector = None          # start afresh: a model fed a failing stream is not trustworthy
            self.motion_state = f"error: {motion_error}"
            log.error("motion detection failed on the clip captured %s (kept, flagged): %s", captured_at,
                      motion_error)
        else:
            self.motion_state = "ok"
        self.clips += 1
        self.handoff(RecordedClip(encoder, plan, captured_at, summary, motion_error))
