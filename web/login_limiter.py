"""The dashboard's limit on passphrase guesses (login, change of passphrase, first-run setup code).

Two budgets, both claimed *before* the passphrase is checked, in one step under a lock, so that parallel
guesses cannot all pass a check that none of them has counted yet:

* **Per client**: ``per_client`` attempts per ``window`` seconds. The client is ``REMOTE_ADDR`` as the
  runtime's front door resolved it through ``trusted_proxies``; IPv6 addresses count per /64, since one host
  usually holds a whole /64 and could rotate through it.
* **Global, exponential**: after ``global_free`` failed attempts in ``global_window`` from anyone, each
  further attempt must wait ``2 ** (n - global_free)`` seconds (capped at ``max_delay``) after the last one.
  An attacker with many addresses gets a few dozen guesses an hour, not thousands.

A successful attempt gives its claim back and clears its client's record; a failed one keeps it (it *is*
the failure). Refused attempts
claim nothing and leave no trace, and entries older than their window are pruned on every claim, so the
table holds at most as many clients as the global budget lets through.

The global backoff refuses the real admin too while it lasts. The way in that no attacker can block is a
one-time login link made on the server itself (``cryospy dashboard login-link``, :mod:`.login_links`).

:class:`LoginLimiter` counts in this process's memory (the embedded default); with ``database_url``,
:class:`~cryospy.web.pg_login_state.PostgresLoginLimiter` counts the same budgets in PostgreSQL, so that an
attacker spreading guesses over several runtimes gets one budget, not one per runtime. Tests hold both to
this contract (tests/unit/test_login_state.py).

Errors::

    CryoSpyError
    └── LoginThrottled   the attempt was refused; ``wait`` is how long, ``message`` what to tell the user
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryospy.common.errors import CryoSpyError
from cryospy.functions.devices.auth_defence import address_key

LINK_HINT = "or run `cryospy dashboard login-link` on the server for a one-time login link"


class LoginThrottled(CryoSpyError):
    def __init__(self, wait: float, everyone: bool):
        seconds = int(wait) + 1
        if everyone:
            message = (f"Too many failed logins on this dashboard recently, from anywhere. Try again in {seconds} s, "
                       f"{LINK_HINT}.")
        else:
            message = f"Too many failed attempts from your address. Try again in {seconds} s, {LINK_HINT}."
        super().__init__(message)
        self.wait, self.everyone, self.message = wait, everyone, message


@dataclass(frozen=True)
class Claim:
    """One counted attempt; hand it back with :meth:`LoginLimiter.succeeded` if the passphrase was right."""

    client: str
    at: float
    ref: int = 0   # the attempt's row in PostgreSQL


class Limiter(Protocol):
    limit: int
    global_free: int

    def claim(self, ip: str) -> Claim: ...

    def succeeded(self, claim: Claim) -> None: ...

    def tracked(self) -> int: ...


def refusal(client_times: list[float], everyone: list[float], now: float, limit: int, window: float,
            global_free: int, max_delay: float) -> LoginThrottled | None:
    """Why an attempt at ``now`` may not run, or None: ``client_times`` are its client's attempts within
    ``window``, ``everyone`` all attempts within the global window (both oldest first)."""
    if len(client_times) >= limit:
        return LoginThrottled(client_times[0] + window - now, everyone=False)
    excess = len(everyone) - global_free
    if excess >= 0:
        ready = everyone[-1] + min(2.0 ** excess, max_delay)
        if now < ready:
            return LoginThrottled(ready - now, everyone=True)
    return None


class LoginLimiter:
    def __init__(self, per_client: int = 5, window: float = 300.0, global_free: int = 20,
                 global_window: float = 3600.0, max_delay: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.limit, self.window = per_client, window
        self.global_free, self.global_window, self.max_delay = global_free, global_window, max_delay
        self._clock = clock
        self._clients: dict[str, deque[float]] = {}
        self._everyone: deque[float] = deque()
        self._lock = threading.Lock()

    def claim(self, ip: str) -> Claim:
        """Count an attempt from ``ip`` before it is checked; raises :class:`LoginThrottled` if it may not run."""
        client = address_key(ip)
        with self._lock:
            now = self._clock()
            self._prune(now)
            refused = refusal(list(self._clients.get(client, ())), list(self._everyone), now, self.limit,
                              self.window, self.global_free, self.max_delay)
            if refused is not None:
                raise refused
            self._clients.setdefault(client, deque()).append(now)
            self._everyone.append(now)
        return Claim(client, now)

    def succeeded(self, claim: Claim) -> None:
        """The attempt was right: it does not count, and the client's earlier failures were typos of someone who
        knows the secret, so they are forgotten. The global count keeps everyone else's failures."""
        with self._lock:
            self._clients.pop(claim.client, None)
            if claim.at in self._everyone:
                self._everyone.remove(claim.at)

    def tracked(self) -> int:
        """How many clients have failures on record (for tests and the status page)."""
        with self._lock:
            self._prune(self._clock())
            return len(self._clients)

    def _prune(self, now: float) -> None:
        while self._everyone and self._everyone[0] <= now - self.global_window:
            self._everyone.popleft()
        for client in list(self._clients):
            queue = self._clients[client]
            while queue and queue[0] <= now - self.window:
                queue.popleft()
            if not queue:
                del self._clients[client]
