"""``motion_only`` mode: which clips to keep so that motion comes with its context.

A clip with motion is kept, with the ``motion_pre_seconds`` before its first motion and the
``motion_post_seconds`` after its last; other clips are discarded. The decision is per clip (clips are
cut back to back, so context is whole clips): a quiet clip is kept when it overlaps that window.

Pre-context means deciding about a clip only after the next one was analysed, so quiet clips are *held*
(their encoded plaintext, in the private scratch directory) until it is clear whether motion follows. A held
clip is never sealed before it is decided: a discarded clip takes no sequence number, so the device's chain
has no gap for it, and verification stays exact. At most as many clips are held as cover
``motion_pre_seconds``. The keeper only decides; the caller seals what is kept and deletes what is
discarded, and calls :meth:`ContextKeeper.release_all` on shutdown so nothing plaintext is left behind.

A clip whose motion analysis failed is kept (it is flagged, never treated as motion or as quiet). When
``motion_only`` is switched off, held clips are kept too: the admin just asked for everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from .motion import MotionSummary


class TimedClip(Protocol):
    @property
    def captured_at(self) -> datetime: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def summary(self) -> MotionSummary | None: ...
    @property
    def motion_error(self) -> str | None: ...


C = TypeVar("C", bound=TimedClip)

# Why a clip is kept; recorded in its metadata so the dashboard can tell context from motion.
MOTION, PRE, POST, RECORDING, MOTION_ERROR = "motion", "pre_context", "post_context", "recording", "motion_error"


@dataclass
class Decision(Generic[C]):
    keep: list[tuple[C, str]]        # in capture order, each with the reason
    discard: list[C]


def _end(clip: TimedClip) -> datetime:
    return clip.captured_at + timedelta(seconds=clip.duration_s)


class ContextKeeper(Generic[C]):
    def __init__(self) -> None:
        self._held: list[C] = []
        self._post_until: datetime | None = None

    @property
    def held(self) -> tuple[C, ...]:
        return tuple(self._held)

    def decide(self, clip: C, *, motion_only: bool, pre_s: float, post_s: float) -> Decision[C]:
        held, self._held = self._held, []
        if not motion_only:
            return Decision([(h, RECORDING) for h in held] + [(clip, RECORDING)], [])
        if clip.motion_error is not None:
            return Decision([(clip, MOTION_ERROR)], held)
        summary = clip.summary
        if summary is not None and summary.motion and summary.intervals:
            first = clip.captured_at + timedelta(seconds=summary.intervals[0].start_s)
            last = clip.captured_at + timedelta(seconds=summary.intervals[-1].end_s)
            window = first - timedelta(seconds=pre_s)
            pre = [h for h in held if _end(h) > window and h.captured_at < clip.captured_at]
            until = last + timedelta(seconds=post_s)
            self._post_until = until if self._post_until is None else max(self._post_until, until)
            kept = {id(h) for h in pre}
            return Decision([(h, PRE) for h in pre] + [(clip, MOTION)], [h for h in held if id(h) not in kept])
        if self._post_until is not None and clip.captured_at < self._post_until:
            return Decision([(clip, POST)], held)
        if pre_s <= 0:
            return Decision([], [*held, clip])
        held.append(clip)
        # Keep only as many quiet clips as it takes to cover pre_s before whatever comes next.
        discard: list[C] = []
        while len(held) > 1 and sum(h.duration_s for h in held[1:]) >= pre_s:
            discard.append(held.pop(0))
        self._held = held
        return Decision([], discard)

    def release_all(self) -> list[C]:
        """Forget every held clip (shutdown); the caller deletes their plaintext."""
        held, self._held = self._held, []
        return held
