"""A deterministic fake camera: frames for the demo and for tests, with no camera and no video files.

Motion detection, encoding and the whole upload pipeline need realistic input: a textured background
(flat frames compress to nothing and hide encoder bugs), sensor noise (a detector must ignore it), an
object that really moves (a detector must see it) and a sudden global brightness change (lights switched
on; a detector should not call that motion). Every frame is a pure function of ``(seed, index)``, so a
test can ask for frame 1234 without generating the 1233 before it and gets the same pixels every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from cryospy.edge_agent.encoder import ClipEncoder, EncodeSettings

__all__ = ["SyntheticScene", "make_sample_video"]

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SyntheticScene:
    """Frame generator; see the module docstring for what each knob is for.

    ``noise_sigma`` is the standard deviation of per-pixel Gaussian noise in grey levels (0 turns it
    off). The moving object crosses the frame left to right once every ``crossing_seconds`` and is a
    bright ellipse about a fifth of the frame high. ``brightness_change_at`` (seconds) adds
    ``brightness_delta`` to every pixel from that moment on. The overlay shows ``start_time`` plus the
    frame's timestamp, like a camera's on-screen clock.
    """

    width: int = 640
    height: int = 360
    fps: float = 15.0
    seed: int = 0
    noise_sigma: float = 2.0
    moving: bool = True
    crossing_seconds: float = 4.0
    brightness_change_at: float | None = None
    brightness_delta: int = 60
    timestamp: bool = True
    start_time: datetime = _EPOCH

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16:
            raise ValueError(f"scene {self.width}x{self.height} is too small; use at least 16x16")
        if self.fps <= 0:
            raise ValueError(f"fps={self.fps!r} must be positive")
        if self.crossing_seconds <= 0:
            raise ValueError(f"crossing_seconds={self.crossing_seconds!r} must be positive")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma={self.noise_sigma!r} must be 0 or more")
        # Frozen dataclass: cache the background through object.__setattr__ (built once, read-only).
        background = _background(self.width, self.height, self.seed)
        background.setflags(write=False)
        object.__setattr__(self, "_background", background)

    @property
    def background(self) -> np.ndarray:
        """The static scene without noise, object, brightness change or overlay (read-only)."""
        return self._background  # type: ignore[attr-defined, no-any-return]

    def object_box(self, i: int) -> tuple[int, int, int, int] | None:
        """The moving object's bounding box ``(x, y, w, h)`` in frame ``i``, or None if there is none.

        Exposed so that motion tests can check a detector found the object where it really is.
        """
        if not self.moving:
            return None
        t = i / self.fps
        ow = max(4, self.width // 8)
        oh = max(4, self.height // 5)
        phase = (t % self.crossing_seconds) / self.crossing_seconds
        cx = round(-ow / 2 + phase * (self.width + ow))
        cy = round(float(self.height * (0.55 + 0.15 * np.sin(2 * np.pi * phase))))
        return cx - ow // 2, cy - oh // 2, ow, oh

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a BGR uint8 array of shape ``(height, width, 3)``."""
        if i < 0:
            raise ValueError(f"frame index {i} is negative")
        t = i / self.fps
        img = self.background.copy()
        box = self.object_box(i)
        if box is not None:
            x, y, w, h = box
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (235, 245, 250), -1,
                        cv2.LINE_AA)
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (20, 40, 160), 2,
                        cv2.LINE_AA)
        work = img.astype(np.int16)
        if self.brightness_change_at is not None and t >= self.brightness_change_at:
            work += self.brightness_delta
        if self.noise_sigma > 0:
            rng = np.random.default_rng([self.seed, i])
            # One noise plane shared by the three channels: real sensor noise is mostly luminance, and
            # it costs a third of the random numbers.
            noise = rng.standard_normal((self.height, self.width, 1), dtype=np.float32) * self.noise_sigma
            work += np.rint(noise).astype(np.int16)
        img = np.clip(work, 0, 255).astype(np.uint8)
        if self.timestamp:
            self._draw_clock(img, t)
        return img

    def _draw_clock(self, img: np.ndarray, t: float) -> None:
        stamp = (self.start_time + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")
        scale = max(0.3, self.height / 720)
        thickness = max(1, round(scale * 2))
        (tw, th), base = cv2.getTextSize(stamp, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x, y = 6, 6 + th
        cv2.rectangle(img, (x - 3, y - th - 3), (x + tw + 3, y + base + 1), (0, 0, 0), -1)
        cv2.putText(img, stamp, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)


def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A room-like static background: smooth colour blotches, a floor gradient and a few solid shapes."""
    rng = np.random.default_rng([seed, 0x5CE2E])
    # Walls: grey blotches with a slight tint, so that the texture is real but not a rainbow.
    grey = rng.integers(70, 190, size=(9, 16, 1)).astype(np.float32)
    tint = rng.normal(0.0, 12.0, size=(9, 16, 3)).astype(np.float32)
    img = cv2.resize(grey + tint, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 10.0, size=(height, width)).astype(np.float32)
    img += cv2.GaussianBlur(fine, (0, 0), 1.5)[..., None]
    # Floor: the lower third darkens towards the camera.
    horizon = height * 2 // 3
    img[horizon:] -= np.linspace(10.0, 50.0, height - horizon, dtype=np.float32)[:, None, None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(5):
        x0 = int(rng.integers(0, width * 3 // 4))
        y0 = int(rng.integers(height // 6, height * 3 // 4))
        x1 = min(width - 1, x0 + int(rng.integers(width // 12, width // 4)))
        y1 = min(height - 1, y0 + int(rng.integers(height // 10, height // 3)))
        colour = tuple(int(c) for c in rng.integers(20, 180, size=3))
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
        cv2.rectangle(img, (x0, y0), (x1, y1), (15, 15, 15), 1)
    return img


def make_sample_video(
    path: Path | str,
    *,
    seconds: float = 10,
    width: int = 640,
    height: int = 360,
    fps: float = 15,
    moving: bool = True,
    seed: int = 0,
    ffmpeg: str | None = None,
) -> Path:
    """Write a synthetic fragmented-MP4 H.264 clip (the demo's camera feed and a test fixture).

    It goes through the real :class:`ClipEncoder`, so it has exactly the layout agent clips have.
    """
    path = Path(path)
    scene = SyntheticScene(width=width, height=height, fps=fps, seed=seed, moving=moving)
    frames = max(1, round(seconds * fps))
    settings = EncodeSettings(width=width, height=height, fps=fps)
    with ClipEncoder(path, settings, ffmpeg=ffmpeg) as encoder:
        for i in range(frames):
            encoder.write(scene.frame(i))
    return path
