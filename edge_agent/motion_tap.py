"""Motion for a camera whose video is stored as it streams: decoded small frames in, a summary per clip out.

In passthrough mode nobody decodes the main stream for recording, so motion gets frames of its own: ffmpeg
decodes either the camera's low-resolution sub-stream (the ``detect_device``, at ``motion_detect_fps``) or
only the keyframes of the main stream, scales them to ``motion_detect_width`` grey pixels and writes them as
PGM images on a pipe. :func:`read_pgm_frames` parses that pipe (the header carries the size, so nothing
has to be probed first).

One clock for the clip and its motion: the agent's monotonic clock. A frame is placed at the moment it
arrives; a clip starts when the previous one was cut. :meth:`MotionTap.cut` is called when ffmpeg reports a
clip finished and returns the summary of everything fed since the last cut, with offsets from the cut, so the
motion intervals in the sealed metadata line up with the clip's own timeline to within a poll interval.

The detector keeps its background model across clips and is rebuilt when the motion settings or the frame
size change. An error never becomes a verdict: the clip is kept and flagged, as with encoded clips.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import numpy as np

from cryospy.common.settings import DeviceSettings

from .motion import MotionDetector, MotionError, MotionSummary, detector_for

__all__ = ["MotionTap", "PgmError", "read_pgm_frames"]

_MAX_SIDE = 8192


class PgmError(MotionError):
    """The frame pipe does not hold PGM images (ffmpeg wrote something else, or the pipe broke mid-frame)."""


def _token(stream: BinaryIO) -> bytes:
    """One whitespace-separated PGM header token (PGM allows any whitespace; ffmpeg writes newlines/spaces)."""
    out = bytearray()
    while True:
        c = stream.read(1)
        if not c:
            if out:
                raise PgmError("the frame pipe ended inside a PGM header")
            return b""
        if c.isspace():
            if out:
                return bytes(out)
            continue
        out += c
        if len(out) > 16:
            raise PgmError(f"PGM header token {bytes(out[:16])!r}... is too long: not a PGM stream")


def read_pgm_frames(stream: BinaryIO) -> Iterator[np.ndarray]:
    """Yield grey frames from binary PGM (P5, 8-bit) images concatenated on ``stream``, until it ends."""
    while True:
        magic = _token(stream)
        if not magic:
            return
        if magic != b"P5":
            raise PgmError(f"expected a binary PGM image (P5), got {magic[:8]!r}")
        try:
            width, height, maxval = int(_token(stream)), int(_token(stream)), int(_token(stream))
        except ValueError:
            raise PgmError("a PGM header holds a non-number where the size belongs") from None
        if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE) or maxval != 255:
            raise PgmError(f"PGM image {width}x{height} (max {maxval}) is not an 8-bit frame of a sane size")
        data = stream.read(width * height)
        if len(data) != width * height:
            return                      # ffmpeg stopped mid-frame: the stream ended
        yield np.frombuffer(data, np.uint8).reshape(height, width)


@dataclass(frozen=True)
class _Config:
    settings: DeviceSettings
    camera_size: tuple[int, int] | None     # the main stream's size, once known: blob filters are in its pixels


class MotionTap:
    """Thread-safe: a reader thread calls :meth:`feed`, the recorder calls :meth:`configure` and :meth:`cut`."""

    def __init__(self, settings: DeviceSettings, *, monotonic: Callable[[], float] = time.monotonic,
                 on_motion: Callable[[float], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._on_motion = on_motion   # each moving frame's score, as it is analysed (real-time events)
        self._monotonic = monotonic
        self._config = _Config(settings, None)
        self._detector: MotionDetector | None = None
        self._built_for: tuple[object, ...] | None = None
        self._clip_start = monotonic()
        self._error: str | None = None
        self._fed = 0
        self.frame_size: tuple[int, int] | None = None    # the detect frames' (width, height), once seen

    def configure(self, settings: DeviceSettings, camera_size: tuple[int, int] | None = None) -> None:
        """Settings for the clips to come (and the main stream's size when it is known)."""
        with self._lock:
            self._config = _Config(settings, camera_size or self._config.camera_size)

    def restart_clip(self) -> None:
        """A new recording session starts a clip now: forget what was fed before (no clip will claim it)."""
        with self._lock:
            if self._detector is not None and self._fed:
                try:
                    self._detector.finish()
                except MotionError:
                    self._detector = None
            self._clip_start, self._error, self._fed = self._monotonic(), None, 0

    def feed(self, frame: np.ndarray) -> None:
        """One decoded grey frame, placed on the clip timeline at its arrival."""
        with self._lock:
            size = (frame.shape[1], frame.shape[0])
            self.frame_size = size
            detector = self._detector_for(size)
            if detector is None:
                return
            try:
                detector.feed(frame, max(0.0, self._monotonic() - self._clip_start))
                self._fed += 1
            except MotionError as exc:
                self._error = self._error or str(exc)

    def fail(self, reason: str) -> None:
        """The frame source broke: the clip being recorded gets no verdict, only this reason."""
        with self._lock:
            self._error = self._error or reason

    def cut(self) -> tuple[MotionSummary | None, str | None]:
        """Summarise the clip that just ended (summary, or the error that prevented one); start the next."""
        with self._lock:
            detector, error, fed = self._detector, self._error, self._fed
            self._clip_start, self._error, self._fed = self._monotonic(), None, 0
            if error is None and (detector is None or fed == 0):
                error = "no frames reached motion detection during this clip"
            if detector is None:
                return None, error
            try:
                summary = detector.finish() if fed else None
            except MotionError as exc:
                error = error or str(exc)
                summary = None
            if error is not None:
                self._detector = None           # a model fed a failing stream is not trustworthy
                return None, error
            return summary, None

    def _detector_for(self, size: tuple[int, int]) -> MotionDetector | None:
        config = self._config
        s = config.settings
        key = (size, config.camera_size, s.motion_detect_width, s.motion_mog_history, s.motion_mog_var_thresh,
               s.motion_warm_up_frames, s.motion_min_area, s.motion_min_width, s.motion_min_height,
               s.motion_min_aspect, s.motion_max_aspect, s.motion_zones, s.motion_masks, s.motion_min_seconds)
        if self._detector is not None and key == self._built_for:
            return self._detector
        try:
            self._detector = detector_for(_in_detect_pixels(s, size, config.camera_size), size,
                                          self._on_motion)
        except MotionError as exc:
            self._detector, self._error = None, self._error or str(exc)
            return None
        self._built_for = key
        return self._detector


def _in_detect_pixels(settings: DeviceSettings, size: tuple[int, int],
                      camera_size: tuple[int, int] | None) -> DeviceSettings:
    """The blob filters are in pixels of the camera's main picture; these frames are smaller: scale them."""
    if camera_size is None or camera_size[0] <= size[0]:
        return settings
    f = size[0] / camera_size[0]
    return replace(settings, motion_min_area=max(1, round(settings.motion_min_area * f * f)),
                   motion_min_width=max(1, round(settings.motion_min_width * f)),
                   motion_min_height=max(1, round(settings.motion_min_height * f)))
