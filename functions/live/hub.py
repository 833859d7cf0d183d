"""The runtime's live state, in memory only: who is watching which camera, and each camera's newest parts.

Nothing here is durable or evidence. A restart forgets viewers (their next poll brings them back) and parts
(the agent's next part starts a new window). One lock and one condition variable guard everything; the
agent's long-poll waits on the condition, so it wakes the moment a viewer arrives or the grace period after
the last one runs out.

* **Viewers** are counted per camera by when a live page last asked (its status or playlist poll). A camera
  is *watched* while any page asked within ``grace_s``; the agent only ever sees that one boolean, so ten
  viewers cost it exactly what one does.
* **Parts** are the verified, parsed facts about each uploaded part (never its bytes): the runtime numbers them
  (media sequence) and counts discontinuities (a new init segment or a jump in decode time: a new clip) so a
  playlist over a sliding window keeps stable numbers. Parts older than ``fresh_s`` are not offered.

:class:`LiveState` is what the rest of the server uses; :class:`LiveHub` is the one runtime's, in memory.
With ``database_url`` set, every runtime shares one in PostgreSQL instead (:mod:`.pg_hub`), so that a browser
on one runtime can watch a camera that pushes its parts to another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class LivePart:
    """One verified part, as the playlist needs it; ``map_key`` is the part whose init segment this one uses."""

    key: str
    media_sequence: int
    discontinuity: int
    captured_at: datetime
    duration_s: float
    init_size: int
    fragment_offset: int
    fragment_size: int
    sealed_size: int
    codec: str
    map_key: str
    received: float              # hub clock (monotonic seconds)


@dataclass(frozen=True)
class ParsedPart:
    """What the uploaded-part check found in a part (see :mod:`.live_parts`)."""

    key: str
    captured_at: datetime
    duration_s: float
    start_s: float
    init_size: int
    init_digest: bytes
    fragment_offset: int
    fragment_size: int
    sealed_size: int
    codec: str


@dataclass(frozen=True)
class Numbering:
    """A camera's running numbers: the next media sequence, the discontinuities so far, and what the next part
    must continue (init segment, decode time) to belong to the same clip."""

    next_sequence: int = 0
    discontinuities: int = 0
    last_init: bytes = b""
    expected_start: float | None = None
    map_key: str = ""


def number_part(numbering: Numbering, part: ParsedPart, received: float) -> tuple[LivePart, Numbering]:
    """``part`` numbered after ``numbering``, and the numbering after it: a new init segment or a jump in decode
    time starts a new clip (a discontinuity, and an init segment of its own)."""
    n = numbering
    contiguous = (n.expected_start is not None and part.init_digest == n.last_init
                  and abs(part.start_s - n.expected_start) < 0.002)
    if not contiguous:
        n = replace(n, discontinuities=n.discontinuities + (1 if n.next_sequence else 0), map_key=part.key,
                    last_init=part.init_digest)
    live = LivePart(part.key, n.next_sequence, n.discontinuities, part.captured_at, part.duration_s,
                    part.init_size, part.fragment_offset, part.fragment_size, part.sealed_size, part.codec,
                    n.map_key, received)
    return live, replace(n, next_sequence=n.next_sequence + 1, expected_start=part.start_s + part.duration_s)


class LiveState(Protocol):
    """Who watches which camera and each camera's newest parts: :class:`LiveHub` (one runtime, memory) or
    :class:`~.pg_hub.PostgresLiveHub` (every runtime on the database)."""

    grace_s: float
    max_waiters: int

    def viewer_seen(self, device_id: str) -> None: ...
    def watched(self, device_id: str) -> bool: ...
    def wait_for_change(self, device_id: str, known: bool, timeout_s: float) -> tuple[bool, bool]: ...
    def release_waiters(self) -> None: ...
    def add_part(self, device_id: str, part: ParsedPart) -> LivePart: ...
    def parts(self, device_id: str) -> list[LivePart]: ...
    def part(self, device_id: str, key: str) -> LivePart | None: ...
    def init_holder(self, device_id: str, map_key: str) -> LivePart | None: ...
    def forget(self, device_id: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Camera:
    last_viewer: float = float("-inf")
    parts: deque[LivePart] | None = None
    numbering: Numbering = Numbering()


class LiveHub:
    def __init__(self, *, grace_s: float = 10.0, window: int = 6, fresh_s: float = 20.0, max_waiters: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s, self.window, self.fresh_s, self.clock = grace_s, window, fresh_s, clock
        self.max_waiters = max_waiters
        self._waiters = 0
        self._closing = False
        self._cameras: dict[str, _Camera] = {}
        self._cond = threading.Condition()

    def _camera(self, device_id: str) -> _Camera:
        cam = self._cameras.get(device_id)
        if cam is None:
            cam = self._cameras[device_id] = _Camera(parts=deque(maxlen=self.window))
        return cam

    # -- viewers ------------------------------------------------------------------------------------------
    def viewer_seen(self, device_id: str) -> None:
        with self._cond:
            cam = self._camera(device_id)
            was = self._watched(cam)
            cam.last_viewer = self.clock()
            if not was:
                self._cond.notify_all()

    def watched(self, device_id: str) -> bool:
        with self._cond:
            return self._watched(self._camera(device_id))

    def _watched(self, cam: _Camera) -> bool:
        return self.clock() - cam.last_viewer <= self.grace_s

    def wait_for_change(self, device_id: str, known: bool, timeout_s: float) -> tuple[bool, bool]:
        """Whether the camera is watched, as soon as that differs from ``known``, else after ``timeout_s``; and
        whether the answer waited. Each waiting poll holds one of the server's request threads, so at most
        ``max_waiters`` wait at once; the others are answered at once and poll again a second later."""
        deadline = self.clock() + timeout_s
        with self._cond:
            cam = self._camera(device_id)
            if self._waiters >= self.max_waiters:
                return self._watched(cam), False
            self._waiters += 1
            try:
                while True:
                    now = self.clock()
                    state = self._watched(cam)
                    if state != known or now >= deadline or self._closing:
                        return state, True
                    wait = deadline - now
                    if state:       # wake when the grace period after the last viewer runs out
                        wait = min(wait, cam.last_viewer + self.grace_s - now + 0.01)
                    self._cond.wait(max(wait, 0.01))
            finally:
                self._waiters -= 1

    def release_waiters(self) -> None:
        """Answer every waiting poll now and every later one at once: the server is stopping, and a
        long-poll must not hold a request thread (and the stop) for its full timeout."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    # -- parts --------------------------------------------------------------------------------------------
    def add_part(self, device_id: str, part: ParsedPart) -> LivePart:
        with self._cond:
            cam = self._camera(device_id)
            if part.key in {p.key for p in cam.parts or ()}:
                return next(p for p in cam.parts or () if p.key == part.key)
            live, cam.numbering = number_part(cam.numbering, part, self.clock())
            assert cam.parts is not None
            cam.parts.append(live)
            return live

    def parts(self, device_id: str) -> list[LivePart]:
        """The camera's newest parts that are still fresh, oldest first."""
        with self._cond:
            cam = self._cameras.get(device_id)
            if cam is None or not cam.parts:
                return []
            now = self.clock()
            return [p for p in cam.parts if now - p.received <= self.fresh_s]

    def part(self, device_id: str, key: str) -> LivePart | None:
        with self._cond:
            cam = self._cameras.get(device_id)
            return next((p for p in cam.parts or () if p.key == key), None) if cam else None

    def init_holder(self, device_id: str, map_key: str) -> LivePart | None:
        """A part that carries the init segment named ``map_key`` (its run's first part may have slid out)."""
        with self._cond:
            cam = self._cameras.get(device_id)
            return next((p for p in reversed(cam.parts or ()) if p.map_key == map_key), None) if cam else None

    def forget(self, device_id: str) -> None:
        with self._cond:
            self._cameras.pop(device_id, None)
            self._cond.notify_all()

    def close(self) -> None:
        """Nothing to let go of: the state is this process's memory."""
