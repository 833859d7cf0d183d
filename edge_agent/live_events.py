"""Real-time events: motion start and end, camera online/offline and source problems, told to the API as they
happen (``POST /v1/device/events``, the device's own credentials, the connection the agent already keeps).

Why a loop of its own: the clip-based record arrives a clip length later; Home Assistant users expect motion
within a second. The capture thread only appends to a bounded queue (:meth:`EventReporter.moving` is O(1) and
never blocks or does I/O); this loop posts batches as soon as something is queued and otherwise ticks every
``TICK_S`` to notice the end of motion and changes of the source's state. When the server cannot be reached,
events wait (the newest ``queue_size``; the oldest are dropped and counted) and are retried with backoff. An
event lost on the way still shows in the clip's own metadata, which stays the durable record (the channels do
not replay it).

Motion, as the detector sees it: a *run* starts with a moving frame and lasts while moving frames keep coming
less than ``QUIET_S`` apart. ``motion_start`` is sent once the run has lasted the camera's
``motion_min_seconds`` (the detector's own rule against insects and noise), with the onset time and score;
``motion_end`` after ``QUIET_S`` without a moving frame (or when the agent stops), with the peak score and
duration. When the clips that the run overlaps are sealed, ``motion_clip`` names them by sequence number (the
clip they belong to). A stopping agent ends with ``camera_offline`` ("the agent stopped").

State, polled every tick from the recorder: ``source_state`` "ok" is ``camera_online``; a failure ("lost",
"unavailable", "offline", "ended", "error") is ``camera_offline`` with the (already redacted) reason; a
``motion_state`` that turns to "error: …" is ``source_problem`` (frames arrive but cannot be analysed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryospy.common.timefmt import parse_utc, utc_stamp

from .api_client import ApiClient, Retryable
from .errors import UploadError
from .spool import SpoolEntry

log = logging.getLogger(__name__)

TICK_S = 0.2          # how often the loop looks for the end of motion and for state changes
QUIET_S = 2.0         # no moving frame for this long ends a run
BATCH_MAX = 100       # events per request (the server refuses more)
RETRY_MAX_S = 30.0
_OFFLINE_PREFIXES = ("lost", "unavailable", "offline", "ended", "error")
_DETAIL_MAX = 300


def _stamp(t: datetime) -> str:
    return utc_stamp(t)


@dataclass
class _Run:
    motion_id: str
    started: float            # monotonic
    started_utc: datetime
    last: float
    peak: float
    reported: bool = False
    ended_utc: datetime | None = None


class EventReporter:
    """The ``events`` loop of the agent: ``run()`` until ``stop``; ``moving(score)`` from the capture thread."""

    def __init__(self, client: ApiClient, stop: threading.Event, *, source_state: Callable[[], str],
                 motion_state: Callable[[], str], min_seconds: Callable[[], float], queue_size: int = 1000,
                 monotonic: Callable[[], float] = time.monotonic,
                 utc: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.stop = stop
        self.source_state = source_state
        self.motion_state = motion_state
        self.min_seconds = min_seconds
        self.monotonic = monotonic
        self.utc = utc
        self.queue: deque[dict[str, Any]] = deque(maxlen=queue_size)
        self.dropped = 0
        self.sent = 0
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._recent: deque[_Run] = deque(maxlen=32)   # runs whose clips may still be sealed
        self._online: bool | None = None
        self._problem = False

    # -- called by other threads -------------------------------------------------------------------
    def moving(self, score: float) -> None:
        """A frame with motion was analysed just now (the detector's ``on_motion``)."""
        now = self.monotonic()
        with self._lock:
            run = self._run
            if run is None or now - run.last > QUIET_S:
                if run is not None:
                    self._end(run)       # the loop has not ticked since it went quiet (a slow POST)
                run = self._run = _Run(uuid.uuid4().hex[:16], now, self.utc(), now, score)
            run.last = now
            run.peak = max(run.peak, score)
            if not run.reported and now - run.started >= self.min_seconds():
                run.reported = True
                self._recent.append(run)
                self._queue({"kind": "motion_start", "id": run.motion_id, "at": _stamp(run.started_utc),
                             "score": round(run.peak, 4)})
                self.wake.set()

    def clip_sealed(self, entry: SpoolEntry) -> None:
        """The finisher sealed a clip: name it to the motion runs it overlaps."""
        try:
            start = parse_utc(entry.captured_at)
        except ValueError:
            return
        end = start + timedelta(seconds=entry.duration_s)
        with self._lock:
            for run in self._recent:
                run_end = run.ended_utc or self.utc()
                if run.started_utc < end and run_end >= start:
                    self._queue({"kind": "motion_clip", "id": run.motion_id, "at": _stamp(start),
                                 "clip_sequence": entry.sequence})

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            self.tick()
            if self.queue:
                try:
                    self.flush()
                    backoff = 1.0
                except Retryable as exc:
                    log.info("events not delivered yet (%d waiting): %s", len(self.queue), exc)
                    self.stop.wait(backoff)
                    backoff = min(RETRY_MAX_S, backoff * 2)
                    continue
            self.wake.wait(TICK_S)
            self.wake.clear()
        self.tick()
        self.stopping()
        with contextlib.suppress(Retryable):
            self.flush()        # a last try: the camera is going offline with us

    def tick(self) -> None:
        """End a quiet run; report changes of the source's and the detector's state."""
        now = self.monotonic()
        with self._lock:
            run = self._run
            if run is not None and now - run.last > QUIET_S:
                self._run = None
                self._end(run)
            state = str(self.source_state())
            online = state == "ok" if state == "ok" or state.startswith(_OFFLINE_PREFIXES) else self._online
            if online is not None and online != self._online:
                self._online = online
                doc = {"kind": "camera_online" if online else "camera_offline", "at": _stamp(self.utc())}
                if not online:
                    doc["detail"] = state[:_DETAIL_MAX]
                self._queue(doc)
            motion_state = str(self.motion_state())
            problem = motion_state.startswith("error")
            if problem and not self._problem:
                self._queue({"kind": "source_problem", "at": _stamp(self.utc()), "detail": motion_state[:_DETAIL_MAX]})
            self._problem = problem

    def stopping(self) -> None:
        """The agent is stopping: end an open motion run and say the camera goes offline."""
        with self._lock:
            run, self._run = self._run, None
            if run is not None:
                self._end(run)
            if self._online is not False:
                self._online = False
                self._queue({"kind": "camera_offline", "at": _stamp(self.utc()), "detail": "the agent stopped"})

    def flush(self) -> None:
        """Post what is queued, in batches; a batch the server refuses for good (4xx) is dropped and logged."""
        while True:
            with self._lock:
                batch = [self.queue[i] for i in range(min(BATCH_MAX, len(self.queue)))]
            if not batch:
                return
            try:
                self.client.post_events(batch)
                self.sent += len(batch)
            except UploadError as exc:
                log.warning("the server refused %d event(s), dropped: %s", len(batch), exc)
            with self._lock:
                for doc in batch:     # those the full queue dropped meanwhile are gone already
                    if self.queue and self.queue[0] is doc:
                        self.queue.popleft()

    def _end(self, run: _Run) -> None:
        if run.reported:
            run.ended_utc = run.started_utc + timedelta(seconds=run.last - run.started)
            self._queue({"kind": "motion_end", "id": run.motion_id, "at": _stamp(run.ended_utc),
                         "score": round(run.peak, 4), "duration_s": round(run.last - run.started, 3)})

    def _queue(self, doc: dict[str, Any]) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(doc)
