"""The fan-out: every enabled channel gets its own bounded queue, worker thread, rate limit and retries.

``publish`` is called on request and handler threads and never blocks: per channel it checks the kind and the
per-camera-and-kind limit and appends to that channel's queue (the oldest waiting event is dropped when full,
and counted). Each worker delivers in order; a :class:`ChannelError` is kept as the channel's last error (the
admin status page shows it) and the same event is retried after 1, 2, 4 … s up to ``retry_max_s``, at most
``max_attempts`` times. A channel that fails only ever delays itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryospy.common.timefmt import utc_now

from .errors import ChannelError

if TYPE_CHECKING:
    from .mqtt import Instance
from .event import HomeEvent
from .settings import Delivery

log = logging.getLogger(__name__)
UNLIMITED = ("camera_added", "camera_removed", "clip_stored", "test", "motion_end", "camera_online")


class Channel(Protocol):
    """One way out of the house. ``deliver`` raises ChannelError (its message is shown to the admin)."""

    name: str

    def start(self) -> None: ...

    def deliver(self, event: HomeEvent) -> None: ...

    def health(self) -> tuple[bool, str, str] | None:
        """What the channel knows better than the last delivery (MQTT: connected or why not) as (ok, detail,
        when), or None for channels without a connection."""
        ...

    def close(self) -> None: ...


class Connectionless:
    """For channels that open nothing ahead of a delivery (e-mail, webhook, push): no-op start/close, no health."""

    def start(self) -> None:
        pass

    def health(self) -> None:
        return None

    def close(self) -> None:
        pass


@dataclass
class ChannelStatus:
    name: str
    state: str                 # "ok", "error", "retrying", "idle" (nothing sent yet) or the channel's own
    last_error: str
    last_error_at: str
    last_ok_at: str
    delivered: int
    queued: int
    dropped: int
    rate_limited: int


class _Worker:
    def __init__(self, channel: Channel, delivery: Delivery, monotonic: Callable[[], float]):
        self.channel, self.delivery, self.monotonic = channel, delivery, monotonic
        self.queue: deque[HomeEvent] = deque(maxlen=delivery.queue_size)
        self.cond = threading.Condition()
        self.stopping = False
        self.last_sent: dict[tuple[str, str], float] = {}
        self.delivered = self.dropped = self.rate_limited = 0
        self.last_error = self.last_error_at = self.last_ok_at = ""
        self.retrying = False
        self.thread = threading.Thread(target=self.run, name=f"channel-{channel.name}", daemon=True)

    def offer(self, event: HomeEvent, force: bool = False) -> None:
        with self.cond:
            if not force:
                if event.kind not in self.delivery.kinds:
                    return
                limit = self.delivery.min_interval_s
                if limit and event.kind not in UNLIMITED:
                    now, key = self.monotonic(), (event.camera, event.kind)
                    last = self.last_sent.get(key)
                    if last is not None and now - last < limit:
                        self.rate_limited += 1
                        return
                    self.last_sent[key] = now
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1
            self.queue.append(event)
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                event = self.queue[0]
            if self._deliver(event):
                with self.cond:
                    if self.queue and self.queue[0] is event:
                        self.queue.popleft()

    def _deliver(self, event: HomeEvent) -> bool:
        """Deliver with retries; False only when stopping (the event stays queued)."""
        backoff = 1.0
        for attempt in range(1, self.delivery.max_attempts + 1):
            try:
                self.channel.deliver(event)
            except ChannelError as exc:
                self.last_error, self.last_error_at, self.retrying = str(exc), utc_now(), True
                log.warning("%s: %s (attempt %d of %d)", self.channel.name, exc, attempt, self.delivery.max_attempts)
            except Exception as exc:   # a bug in a channel must not end its worker
                self.last_error, self.last_error_at, self.retrying = f"unexpected: {exc!r}", utc_now(), True
                log.exception("%s failed unexpectedly", self.channel.name)
            else:
                self.delivered += 1
                self.last_ok_at, self.retrying = utc_now(), False
                return True
            if attempt == self.delivery.max_attempts:
                break
            with self.cond:
                if self.cond.wait_for(lambda: self.stopping, timeout=backoff):
                    return False
            backoff = min(self.delivery.retry_max_s, backoff * 2)
        self.retrying = False
        with self.cond:
            self.dropped += 1
        log.error("%s: gave up on a %s event of %s after %d attempts", self.channel.name, event.kind, event.camera,
                  self.delivery.max_attempts)
        return True

    def status(self) -> ChannelStatus:
        with self.cond:
            queued = len(self.queue)
        health = self.channel.health()
        error, error_at = self.last_error, self.last_error_at
        if health is not None and not health[0]:
            state, error, error_at = "error", health[1], health[2]
        elif self.retrying:
            state = "retrying"
        elif health is not None:
            state = "connected"
        elif self.last_error and self.last_error_at > self.last_ok_at:
            state = "error"
        else:
            state = "ok" if self.last_ok_at else "idle"
        return ChannelStatus(self.channel.name, state, error, error_at, self.last_ok_at,
                             self.delivered, queued, self.dropped, self.rate_limited)

    def adopt(self, old: _Worker) -> None:
        """Take the events the same channel's previous worker had not delivered yet (its settings changed on the
        dashboard): they go first, in order, if this channel still sends their kind; the queue's bound holds."""
        with old.cond:
            pending = [e for e in old.queue if e.kind in self.delivery.kinds or e.kind == "test"]
            old.queue.clear()
        with self.cond:
            merged = deque(pending + list(self.queue), maxlen=self.queue.maxlen)
            self.dropped += len(pending) + len(self.queue) - len(merged)
            self.queue = merged
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()


class ChannelHub:
    """The channels of this runtime; with none configured every call is a cheap no-op."""

    def __init__(self, channels: Iterable[tuple[Channel, Delivery]] = (),
                 monotonic: Callable[[], float] = time.monotonic, instance: Instance | None = None) -> None:
        """``instance``: the runtime identity the channels were built with (mqtt.Instance), kept so that
        channels rebuilt from the dashboard get the same one."""
        self._workers = {c.name: _Worker(c, d, monotonic) for c, d in channels}
        self.instance = instance
        self._started = False

    @property
    def names(self) -> list[str]:
        return list(self._workers)

    def start(self) -> None:
        for w in self._workers.values():
            w.channel.start()
            w.thread.start()
        self._started = True

    def wants(self, kind: str) -> bool:
        """Whether any channel sends this kind (lets callers skip work for an event nobody takes)."""
        return any(kind in w.delivery.kinds for w in self._workers.values())

    def publish(self, events: Iterable[HomeEvent]) -> None:
        for event in events:
            for w in self._workers.values():
                w.offer(event)

    def send_test(self, name: str, camera: str = "test") -> None:
        """A "test" event to one channel, past its kinds and limits; KeyError for an unknown channel."""
        self._workers[name].offer(HomeEvent(camera=camera, kind="test", at=utc_now()), force=True)

    def status(self) -> list[ChannelStatus]:
        return [w.status() for w in self._workers.values()]

    def replace_with(self, other: ChannelHub) -> None:
        """Take ``other``'s (unstarted) channels in place of this hub's, keeping this object: everything that
        holds the hub publishes to the new channels from now on. The old channels are closed before the new
        ones start, so an MQTT client's "offline" never lands after its successor's "online"."""
        old, self._workers = self._workers, other._workers
        other._workers = {}
        if self._started:
            self._close(old)
        for name, w in self._workers.items():
            if name in old:
                w.adopt(old[name])
            if self._started:
                w.channel.start()
                w.thread.start()

    def close(self) -> None:
        self._close(self._workers)

    def _close(self, workers: dict[str, _Worker]) -> None:
        for w in workers.values():
            w.stop()
        for w in workers.values():
            if self._started:
                w.thread.join(10)
            w.channel.close()
