"""Which cameras' agents are still in touch: ``camera_offline`` when an agent falls silent without a goodbye.

An agent that stops cleanly reports ``camera_offline`` itself (edge_agent/live_events.py). One that dies (power
cut, SIGKILL, a cable pulled) says nothing, and its camera would stay "online" on MQTT forever. Every running
agent is in touch all the time: its live-view long-poll (``GET /v1/device/live/watch``) is held by the server
for up to 20 s and asked again at once, besides heartbeats, events and uploads. So:

* every authenticated device request is *contact* (:meth:`Presence.seen`), and a held long-poll is contact
  for as long as it is held (:meth:`Presence.holding`): a live agent is never silent, whatever the timeout;
* a camera with no contact for ``offline_after_s`` (and no poll held) is *silent*: if it was online, a
  ``camera_offline`` event goes to the channels ("no contact from the agent for 60 s"), so the MQTT
  connectivity sensor turns OFF (retained) and e-mail, push and webhooks hear of it;
* the next contact ends the silence: ``camera_online``, unless the agent's own last word was
  ``camera_offline`` (its source is down, or it stopped: then its own ``camera_online`` follows when it is).

A dead agent is noticed ``offline_after_s`` after its last contact plus at most one check interval; its last
long-poll ends by itself up to 20 s after the agent died (the server cannot tell a dead socket from a patient
one while it holds the answer), so the delay after the death is from ``offline_after_s`` to
``offline_after_s`` + 20 s + ``check_s``.

At start the table is primed from each camera's persisted ``last_seen``: a camera not seen within
``offline_after_s`` starts OFF without an event (the runtime was away, it cannot know when the agent died),
the others start with the contact they had. This is state only: no I/O, no threads; :class:`PresenceWatch`
is the loop that checks and publishes. With several runtimes (``database_url``) each runtime hears only its
own cameras' contact, so the state moves to the database: shared_presence.py.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from cryospy.common.timefmt import parse_utc, utc_now

from .event import HomeEvent

log = logging.getLogger(__name__)
DEFAULT_OFFLINE_AFTER_S = 60.0
OFFLINE_AFTER_BOUNDS = (15.0, 3600.0)


@dataclass
class _Camera:
    contact: float                  # monotonic time of the last contact
    held: int = 0                   # long-polls in flight
    silent: bool = False
    reported: str | None = None     # "ON" / "OFF": the agent's own last camera_online / camera_offline


class Presence:
    def __init__(self, offline_after_s: float = DEFAULT_OFFLINE_AFTER_S,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.offline_after_s = offline_after_s
        self.monotonic = monotonic
        self.wall = wall
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}

    def prime(self, last_seen: Iterable[tuple[str, str | None]]) -> None:
        """Start from each camera's persisted last contact (ISO 8601 UTC); never-seen cameras stay unknown."""
        now, wall = self.monotonic(), self.wall()
        with self._lock:
            for camera, seen in last_seen:
                if not seen or camera in self._cameras:
                    continue
                try:
                    ago = (wall - parse_utc(seen)).total_seconds()
                except ValueError:
                    continue
                self._cameras[camera] = _Camera(now - max(0.0, ago), silent=ago > self.offline_after_s)

    def seen(self, camera: str) -> list[HomeEvent]:
        """Contact from the camera's agent; the ``camera_online`` that ends a silence, if any."""
        with self._lock:
            state = self._cameras.get(camera)
            if state is None:
                self._cameras[camera] = _Camera(self.monotonic())
                return []
            state.contact = self.monotonic()
            if not state.silent:
                return []
            state.silent = False
            if state.reported == "OFF":
                return []
        log.info("%s: contact from its agent again", camera)
        return [HomeEvent(camera=camera, kind="camera_online", at=utc_now(), detail="contact resumed")]

    @contextlib.contextmanager
    def holding(self, camera: str) -> Iterator[None]:
        """A long-poll in flight: the agent is in touch while the server holds it."""
        with self._lock:
            state = self._cameras.setdefault(camera, _Camera(self.monotonic()))
            state.held += 1
        try:
            yield
        finally:
            with self._lock:
                state = self._cameras.get(camera)
                if state is not None:
                    state.held = max(0, state.held - 1)
                    state.contact = self.monotonic()

    def reported(self, event: HomeEvent) -> None:
        """The agent's own word on its camera (``camera_online`` / ``camera_offline``)."""
        if event.kind not in ("camera_online", "camera_offline"):
            return
        with self._lock:
            state = self._cameras.setdefault(event.camera, _Camera(self.monotonic()))
            state.reported = "ON" if event.kind == "camera_online" else "OFF"

    def check(self) -> list[HomeEvent]:
        """Cameras that just fell silent: a ``camera_offline`` for each that was online."""
        now = self.monotonic()
        out: list[HomeEvent] = []
        with self._lock:
            for camera, state in self._cameras.items():
                if state.silent or state.held or now - state.contact <= self.offline_after_s:
                    continue
                state.silent = True
                if state.reported != "OFF":
                    out.append(HomeEvent(camera=camera, kind="camera_offline", at=utc_now(),
                                         detail=f"no contact from the agent for {self.offline_after_s:g} s"))
        for event in out:
            log.warning("%s: %s", event.camera, event.detail)
        return out

    def connectivity(self, camera: str) -> str | None:
        """"ON", "OFF" or None (never heard of since this runtime started, and no persisted contact)."""
        with self._lock:
            state = self._cameras.get(camera)
            if state is None:
                return None
            return "OFF" if state.silent or state.reported == "OFF" else "ON"

    def forget(self, camera: str) -> None:
        with self._lock:
            self._cameras.pop(camera, None)

    def close(self) -> None:
        """Nothing to release here; the shared presence (shared_presence.py) closes its database pool."""


class PresenceWatch:
    """Checks every ``check_s`` and hands the events to ``publish`` (the runtime's current channel hub)."""

    def __init__(self, presence: Presence, publish: Callable[[list[HomeEvent]], None],
                 check_s: float | None = None) -> None:
        self.presence = presence
        self.publish = publish
        self.check_s = check_s if check_s is not None else min(5.0, presence.offline_after_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self) -> None:
        while not self._stop.wait(self.check_s):
            try:
                events = self.presence.check()
                if events:
                    self.publish(events)
            except Exception:       # a bug here must not end the loop
                log.exception("presence check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
