"""What a recorder hands to the finisher, whichever way the clip was made.

Two recorders make clips: :mod:`.recorder` decodes a raw source and encodes it (USB cameras, files, the
synthetic scene, or any camera the admin asked to transform), and :mod:`.passthrough` stores a compressed
camera stream as it arrives (RTSP IP cameras). The finisher does not care which: it closes the clip file,
decides whether to keep it, describes it from :class:`StreamInfo` and seals it. These types are the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.settings import DeviceSettings
from cryospy.common.timefmt import utc_stamp

from .motion import MotionSummary


@dataclass(frozen=True)
class StreamInfo:
    """The video as stored: codec name as ffmpeg says it (``h264``, ``hevc``), coded size, average rate, and
    the audio codec when the clip carries sound (``None``: silent)."""

    codec: str
    width: int
    height: int
    fps: float
    audio: str | None = None

    def describe(self) -> str:
        """One line for logs, heartbeats and the admin page: ``h264 1920x1080 25 fps, audio aac``."""
        text = f"{self.codec} {self.width}x{self.height} {self.fps:g} fps"
        return text + (f", audio {self.audio}" if self.audio else "")


@dataclass(frozen=True)
class EncodedClip:
    """A finished clip file: where it is, how many video frames it holds, how long it plays, what it holds."""

    path: Path
    frames: int
    duration_s: float
    stream: StreamInfo


class ClipFile(Protocol):
    """A clip being written: ``close()`` finishes it (idempotent), ``abort()`` discards it."""

    def close(self) -> EncodedClip: ...
    def abort(self) -> None: ...


class ClipPlan(Protocol):
    """What the finisher needs from the plan a clip was recorded under."""

    @property
    def settings(self) -> DeviceSettings: ...
    @property
    def etag(self) -> str: ...
    @property
    def recipient(self) -> DeploymentPublicKey: ...
    @property
    def motion_only(self) -> bool: ...
    @property
    def mode(self) -> str: ...


@dataclass(frozen=True)
class SourceGap:
    """The camera delivered nothing from ``start`` to ``end`` (UTC): an outage, told apart from a missing clip.

    It travels sealed in the metadata of the first clip after the outage, so the server learns it exactly
    once and in order, from the same signed chain as the footage.
    """

    start: datetime
    end: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"from": utc_stamp(self.start), "to": utc_stamp(self.end), "reason": self.reason[:200]}


@dataclass
class RecordedClip:
    """A clip whose content is all written (or being finished by ffmpeg); the finisher closes and seals it."""

    file: ClipFile
    plan: ClipPlan
    captured_at: datetime
    summary: MotionSummary | None
    motion_error: str | None
    source_gap: SourceGap | None = None
