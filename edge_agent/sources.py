"""Frame sources: a V4L2 device (path or index), a stream URL, a video file, or a synthetic scene.

``camera_device`` picks the kind: ``synthetic:`` (optionally ``synthetic:WIDTHxHEIGHT``), an integer index,
``/dev/videoN``, an ``rtsp://``/``http(s)://`` URL, or a file path. A file is paced at its own frame rate so
that it behaves like a live camera. A looped file is *reopened* at its end rather than rewound: a file that
was removed or replaced is noticed there, like an unplugged camera, instead of playing on from an open
descriptor forever.

Every failure to open or read is a :class:`SourceError`; the recorder reopens with backoff. A file played
once raises :class:`SourceEnded` at its end, which the recorder does not retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .errors import SourceError
from .stream_url import is_stream_url, redact
from .synthetic import SyntheticScene

# A synthetic scene repeats every crossing; caching one crossing makes the fake camera nearly free (so that
# benchmarks measure the agent, not the scene generator) as long as it fits in this much memory.
_SYNTHETIC_CACHE_BYTES = 256 * 1024 * 1024


class SourceEnded(SourceError):
    """A video file played once has reached its end; there is nothing to reopen."""


class FrameSource(Protocol):
    fps: float
    width: int
    height: int

    def read(self) -> np.ndarray: ...
    def close(self) -> None: ...


class SyntheticSource:
    def __init__(self, width: int, height: int, fps: float, clock: Callable[[], float] = time.monotonic):
        self.scene = SyntheticScene(width=width, height=height, fps=fps, timestamp=False)
        self.fps, self.width, self.height = fps, width, height
        period = round(self.scene.crossing_seconds * fps)
        self._period = period if period * width * height * 3 <= _SYNTHETIC_CACHE_BYTES else 0
        self._cache: dict[int, np.ndarray] = {}
        self._i = 0
        self._clock = clock
        self._next = clock()

    def read(self) -> np.ndarray:
        _pace(self, self._clock)
        i = self._i % self._period if self._period else self._i
        frame = self._cache.get(i)
        if frame is None:
            frame = self.scene.frame(i)
            if self._period:
                frame.setflags(write=False)
                self._cache[i] = frame
        self._i += 1
        return frame

    def close(self) -> None:
        self._cache.clear()


@dataclass(frozen=True)
class CaptureRequest:
    """What the admin asks a camera device (USB/V4L2) for; 0 or '' leaves the driver's choice."""

    width: int = 0
    height: int = 0
    fps: float = 0.0
    fourcc: str = ""


def apply_capture_request(cap: cv2.VideoCapture, request: CaptureRequest) -> str:
    """Ask the device for the request (FourCC first: drivers offer sizes and rates per pixel format), then
    read back what the driver granted, as one line for the heartbeat: ``1280x720 30 fps MJPG``."""
    if request.fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*request.fourcc.ljust(4)[:4]))
    if request.width and request.height:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, request.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, request.height)
    if request.fps:
        cap.set(cv2.CAP_PROP_FPS, request.fps)
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    fourcc = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") if code > 0 else "?"
    granted = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))} " \
              f"{cap.get(cv2.CAP_PROP_FPS):g} fps {fourcc}"
    asked = [f"{request.width}x{request.height}" if request.width else "", f"{request.fps:g} fps" if request.fps
             else "", request.fourcc]
    if any(asked):
        granted += f" (asked for {' '.join(a for a in asked if a)})"
    return granted


class OpenCvSource:
    def __init__(self, spec: str, loop: bool, fps_hint: float, clock: Callable[[], float] = time.monotonic,
                 request: CaptureRequest | None = None):
        self.spec = spec
        self.loop = loop
        self.is_device = spec.isdigit() or spec.startswith("/dev/")
        self.is_file = not self.is_device and not is_stream_url(spec)
        self.cap = self._open()
        # Only a camera device negotiates a format; files and streams are what they are.
        self.granted = apply_capture_request(self.cap, request) if self.is_device and request else ""
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else fps_hint
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or 640
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or 480
        self._clock = clock
        self._next = clock()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera source {redact(self.spec)!r}: check the device path/URL/file "
                              "and that no other program holds the camera")
        return cap

    def read(self) -> np.ndarray:
        if self.is_file:
            _pace(self, self._clock)
        ok, frame = self.cap.read()
        if not ok and self.is_file:
            if not self.loop:
                raise SourceEnded(f"video file {redact(self.spec)!r} has ended (loop is off)")
            self.cap.release()
            self.cap = self._open()
            ok, frame = self.cap.read()
        if not ok or frame is None:
            raise SourceError(f"camera source {redact(self.spec)!r} stopped delivering frames")
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


def open_source(spec: str, *, loop: bool, fps: float, width: int = 0, height: int = 0,
                fourcc: str = "") -> FrameSource:
    """Open ``spec`` (see the module docstring); ``fps`` is the plan's rate, a hint for sources without one."""
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
    return OpenCvSource(spec, loop, fps, request=CaptureRequest(width, height, fps, fourcc))
