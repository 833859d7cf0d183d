"""Frame sources: a V4L2 device (path or index), a stream URL, a video file, or a synthetic scene.

``camera_device`` picks the kind: ``synthetic:`` (optionally ``synthetic:WIDTHxHEIGHT``), an integer index,
``/dev/videoN``, an ``rtsp://``/``http(s)://`` URL, or a file path. A file is paced at its own frame rate
(and looped when configured) so that it behaves like a live camera.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import cv2
import numpy as np

from .errors import SourceError
from .synthetic import SyntheticScene


class FrameSource(Protocol):
    fps: float
    width: int
    height: int

    def read(self) -> np.ndarray: ...
    def close(self) -> None: ...


class SyntheticSource:
    def __init__(self, width: int, height: int, fps: float, clock: Callable[[], float] = time.monotonic):
        self.scene = SyntheticScene(width=width, height=height, fps=fps)
        self.fps, self.width, self.height = fps, width, height
        self._i = 0
        self._clock = clock
        self._next = clock()

    def read(self) -> np.ndarray:
        _pace(self, self._clock)
        frame = self.scene.frame(self._i)
        self._i += 1
        return frame

    def close(self) -> None:
        pass


class OpenCvSource:
    def __init__(self, spec: str, loop: bool, fps_hint: float, clock: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.loop = loop
        target: int | str = int(spec) if spec.isdigit() else spec
        self.is_file = not spec.isdigit() and not spec.startswith(("/dev/", "rtsp://", "http://", "https://"))
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open camera source {spec!r}: check the device path/URL/file and that no "
                              "other program holds the camera")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else fps_hint
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or 640
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or 480
        self._clock = clock
        self._next = clock()

    def read(self) -> np.ndarray:
        if self.is_file:
            _pace(self, self._clock)
        ok, frame = self.cap.read()
        if not ok and self.is_file and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        if not ok or frame is None:
            raise SourceError(f"camera source {self.spec!r} stopped delivering frames")
        return frame

    def close(self) -> None:
        self.cap.release()


def _pace(src: SyntheticSource | OpenCvSource, clock: Callable[[], float]) -> None:
    """Deliver frames at the source's rate, like a live camera; never drift by more than a second."""
    now = clock()
    wait = src._next - now
    if wait > 0:
        time.sleep(wait)
    src._next = max(src._next + 1.0 / src.fps, now - 1.0)


def open_source(spec: str, *, loop: bool, fps: float, width: int, height: int) -> FrameSource:
    if spec.startswith("synthetic:"):
        size = spec[len("synthetic:"):]
        if size:
            try:
                w, h = (int(v) for v in size.lower().split("x"))
            except ValueError:
                raise SourceError(f"synthetic source size {size!r} must look like 640x360") from None
        else:
            w, h = width or 640, height or 360
        return SyntheticSource(w, h, fps)
    return OpenCvSource(spec, loop, fps)
