"""Where the dashboard keeps who is logged in: sessions, and logins waiting for their second factor.

Two stores hold the same contract (tests/unit/test_login_state.py runs the same tests on both):

* :class:`MemorySessions`, the embedded default: this process's memory, so a restart logs everyone out;
* :class:`~cryospy.web.pg_sessions.PostgresSessions` (``database_url``): one table shared by every runtime of
  the deployment, so a browser may be sent to any of them (docs/postgres.md).

The store makes every token (256 random bits), so that a token never comes from the caller, and answers with
typed records. Time is the caller's clock (``now``), as it judges account expiry too. Logging out, ending an
account's sessions and expiry act on the store, so with PostgreSQL they act on every runtime at once.

A *pending* login is the step between a right passphrase and its second-factor code: its token is another
cookie's, looked up under another name, so it can never be used as a session.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, replace
from typing import Protocol

from .login_limiter import Limiter
from .login_links import Links

PENDING_LIMIT = 100   # pending logins held at once in memory (each needed a right passphrase)


@dataclass(frozen=True)
class StoredSession:
    """A session as its store holds it: ``csrf`` is the secret its forms carry (masked per page)."""

    account: str
    expires: float
    csrf: str
    must_enrol: bool = False   # the admin requires a second factor and this account has none yet


@dataclass(frozen=True)
class PendingLogin:
    """A right passphrase (or login link) whose second factor is asked next."""

    account: str
    via: str
    expires: float


class SessionStore(Protocol):
    shared: bool   # True when other runtimes see the same sessions

    def start(self, account: str, expires: float, now: float, must_enrol: bool = False) -> tuple[str, StoredSession]:
        """A new session; returns its token (the cookie's value) and record. Sessions expired at ``now`` may be
        pruned."""
        ...

    def get(self, token: str, now: float) -> StoredSession | None:
        """The live session of ``token``, or None (unknown, ended or expired at ``now``)."""
        ...

    def end(self, token: str) -> None:
        """Log this session out (nothing if it is gone already)."""
        ...

    def end_account(self, account: str, keep: str = "") -> int:
        """End every session of ``account`` but the one whose token is ``keep``; returns how many ended."""
        ...

    def enrolled(self, token: str) -> None:
        """The session's account has a second factor now: the session may go everywhere."""
        ...

    def start_pending(self, account: str, via: str, expires: float, now: float) -> str:
        """A login waiting for its code; returns its token."""
        ...

    def get_pending(self, token: str, now: float) -> PendingLogin | None:
        ...

    def end_pending(self, token: str) -> None:
        ...

    def close(self) -> None:
        ...


def new_token() -> str:
    return secrets.token_urlsafe(32)


class MemorySessions:
    """Sessions in this process's memory (the behaviour CryoSpy always had without a database)."""

    shared = False

    def __init__(self) -> None:
        self._sessions: dict[str, StoredSession] = {}
        self._pending: dict[str, PendingLogin] = {}
        self._lock = threading.Lock()

    def start(self, account: str, expires: float, now: float, must_enrol: bool = False) -> tuple[str, StoredSession]:
        token, record = new_token(), StoredSession(account, expires, secrets.token_urlsafe(24), must_enrol)
        with self._lock:
            self._sessions = {t: r for t, r in self._sessions.items() if r.expires >= now}
            self._sessions[token] = record
        return token, record

    def get(self, token: str, now: float) -> StoredSession | None:
        with self._lock:
            record = self._sessions.get(token)
            if record is not None and record.expires < now:
                del self._sessions[token]
                return None
        return record

    def end(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def end_account(self, account: str, keep: str = "") -> int:
        with self._lock:
            ended = [t for t, record in self._sessions.items() if record.account == account and t != keep]
            for token in ended:
                del self._sessions[token]
        return len(ended)

    def enrolled(self, token: str) -> None:
        with self._lock:
            record = self._sessions.get(token)
            if record is not None:
                self._sessions[token] = replace(record, must_enrol=False)

    def start_pending(self, account: str, via: str, expires: float, now: float) -> str:
        token = new_token()
        with self._lock:
            self._pending = {t: p for t, p in self._pending.items() if p.expires > now}
            while len(self._pending) >= PENDING_LIMIT:
                self._pending.pop(next(iter(self._pending)))
            self._pending[token] = PendingLogin(account, via, expires)
        return token

    def get_pending(self, token: str, now: float) -> PendingLogin | None:
        with self._lock:
            pending = self._pending.get(token)
        return pending if pending is not None and pending.expires >= now else None

    def end_pending(self, token: str) -> None:
        with self._lock:
            self._pending.pop(token, None)

    def count(self, account: str | None = None) -> int:
        """Live sessions (of ``account``), for tests."""
        with self._lock:
            return sum(1 for r in self._sessions.values() if account is None or r.account == account)

    def close(self) -> None:
        pass


@dataclass
class LoginState:
    """A runtime's sessions, login limiter and login links, opened together (infra/stores.py): all embedded, or
    all in PostgreSQL on one pool, which closing the sessions closes."""

    sessions: SessionStore
    limiter: Limiter
    links: Links

    def close(self) -> None:
        self.sessions.close()
