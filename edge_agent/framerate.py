"""Constant-rate timing for cameras that deliver frames at a variable rate.

Why: an MP4 from the agent has a constant frame rate (the server computes durations and HLS segments from
it), but webcams slow down in low light, streams stutter and a busy board reads late. Encoding every frame
as it comes would make a "60 s" clip play 90 s of footage in 60, and clip timestamps would drift from the
wall clock. So the recorder places each frame on a constant-rate timeline by its arrival time (monotonic
clock): a frame covers every slot from the next free one up to the slot of its arrival (repeated when the
camera was slow), and a frame that arrives before its slot is skipped (the camera is faster than the plan,
which also saves encoding work). A clip's duration is then frames / fps as encoded, and equals the wall
time it covers.

A gap longer than ``max_gap_s`` is not papered over with a frozen picture: :meth:`FrameClock.place` reports
a stall, the recorder ends the clip there, and the next clip starts with its own wall-clock time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    copies: int          # how many consecutive slots this frame fills (0 = skip it)
    stalled: bool        # the frame came after a gap longer than max_gap_s; the timeline restarted with it


class FrameClock:
    """Maps arrival times (seconds, monotonic) of one source session onto slots of ``1 / fps``."""

    def __init__(self, fps: float, max_gap_s: float = 2.0) -> None:
        if fps <= 0:
            raise ValueError(f"fps={fps!r} must be positive")
        self.fps = fps
        self.max_gap_slots = max(1, round(max_gap_s * fps))
        self._t0: float | None = None
        self.next_slot = 0

    def place(self, t: float) -> Placement:
        if self._t0 is None:
            self._t0 = t
            self.next_slot = 1
            return Placement(1, False)
        slot = math.floor((t - self._t0) * self.fps + 0.5)
        if slot < self.next_slot:
            return Placement(0, False)
        if slot - self.next_slot >= self.max_gap_slots:
            # Re-anchor so that this frame takes the next slot: the gap is not filled.
            self._t0 = t - self.next_slot / self.fps
            self.next_slot += 1
            return Placement(1, True)
        copies = slot - self.next_slot + 1
        self.next_slot = slot + 1
        return Placement(copies, False)
