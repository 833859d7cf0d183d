"""Failed logins in the audit log, aggregated so that a flood cannot grow the log without bound.

Every failed login is worth recording, but an attacker decides how many there are. So, per interval
(``interval``, 10 minutes by default):

* the **first** failure from a source (an address; IPv6 counted per /64, as the login limiter does) is written
  at once, as ``login.failed``, with the reason;
* further failures from that source in the same interval are only counted, and written as **one**
  ``login.failed.repeated`` entry (with the count) when the interval is over;
* attempts the login limiter refused before checking anything are counted for everyone together and written
  as one ``login.refused`` entry per interval (count, and how many sources);
* at most ``max_sources`` sources per interval get entries of their own; the rest are folded into one
  ``login.failed.others`` entry.

So one interval adds at most ``2 * max_sources + 2`` entries whatever the attacker sends, and memory holds at
most ``max_sources`` sources. Aggregation only decides what is *written*: nobody is locked out by it (the
login limiter decides that, and it is unchanged). Pending counts are written by :meth:`flush`, called on every
failure, by the audit and status pages, and when the runtime stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryospy.functions.devices.auth_defence import address_key

from .actor import Actor
from .log import AuditLog, NoAudit

INTERVAL_SECONDS = 600.0
MAX_SOURCES = 20


@dataclass
class _Source:
    account: str
    via: str
    address: str
    repeated: int = 0


class FailedLogins:
    def __init__(self, audit: AuditLog | NoAudit, interval: float = INTERVAL_SECONDS, max_sources: int = MAX_SOURCES,
                 clock: Callable[[], float] = time.time):
        self.audit, self.interval, self.max_sources, self._clock = audit, interval, max_sources, clock
        self._window = -1
        self._sources: dict[str, _Source] = {}
        self._others = 0
        self._refused = 0
        self._refused_from: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, account: str, via: str, address: str, reason: str) -> None:
        """A login (or second factor, or login link) that was checked and failed."""
        self.flush()
        source = address_key(address)
        with self._lock:
            known = self._sources.get(source)
            if known is not None:
                known.repeated += 1
                return
            if len(self._sources) >= self.max_sources:
                self._others += 1
                return
            self._sources[source] = _Source(account, via, address)
        self.audit.record("login.failed", Actor(account, via, address), reason=reason)

    def refused(self, address: str) -> None:
        """An attempt the login limiter refused before anything was checked."""
        self.flush()
        with self._lock:
            self._refused += 1
            if len(self._refused_from) < 1000:
                self._refused_from.add(address_key(address))

    def flush(self, final: bool = False) -> None:
        """Write the counts of an interval that is over (``final``: of the current one too; the runtime stops)."""
        window = int(self._clock() // self.interval)
        with self._lock:
            if window == self._window and not final:
                return
            sources, others, refused, refused_from = self._sources, self._others, self._refused, self._refused_from
            self._window, self._sources, self._others, self._refused, self._refused_from = window, {}, 0, 0, set()
        self._write(sources, others, refused, len(refused_from))

    def _write(self, sources: dict[str, _Source], others: int, refused: int, refused_sources: int) -> None:
        minutes = f"{self.interval / 60:g} min"
        for source in sources.values():
            if source.repeated:
                self.audit.record("login.failed.repeated", Actor(source.account, source.via, source.address),
                                  count=source.repeated, interval=minutes)
        if others:
            self.audit.record("login.failed.others", Actor("", "dashboard", ""), count=others, interval=minutes)
        if refused:
            self.audit.record("login.refused", Actor("", "dashboard", ""), count=refused, sources=refused_sources,
                              interval=minutes)
