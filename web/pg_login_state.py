"""The dashboard's login state in PostgreSQL (``database_url``): sessions, the login limiter's budgets and
one-time login links, shared by every runtime of the deployment so that a load balancer needs no sticky
sessions to keep a browser logged in (docs/postgres.md). Each class holds the contract of its embedded twin
(:mod:`.sessions`, :mod:`.login_limiter`, :mod:`.login_links`; tests/unit/test_login_state.py runs the same
tests on both).

What a copy of the tables gives away, and what it does not:

* ``dashboard_sessions``: the *keyed hash* of each session token (HMAC-SHA-256 under the key below), never the
  token, so a copy logs nobody in; a keyed hash of the account name (so that ending an account's sessions is
  one statement on every runtime at once); the expiry in the clear (pruning); the account name and the
  second-factor flag sealed (AES-256-GCM, the token's hash bound in). The CSRF secret is not stored at all: it
  is an HMAC of the token, so any runtime derives it from the cookie.
* ``login_attempts``: one row per counted attempt, its time in the clear and its client as a keyed hash of the
  address (IPv6 per /64); a client's rows lose that hash when it logs in.
* ``login_links``: the keyed hash of each link's token, its expiry, and the account it logs in, sealed.
  Redeeming is ``DELETE … RETURNING``: of two runtimes redeeming at once exactly one gets the row.

The key (:func:`cryospy.infra.stores.login_state_key`) is derived from the deployment's admin token, like the
registry's, not from the index key: the limiter counts a login *before* its passphrase unlocks anything, a
locked runtime must recognise sessions (and redeem links) as an unlocked one does, and ``cryospy dashboard
login-link`` runs on the server without the passphrase. Whoever holds the admin token can already make a
login link, so the key gives its holder nothing new.

Times are the callers' clocks (as for the embedded stores), except the limiter's, which reads the database's
clock unless one is injected: its budgets are compared across runtimes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.accounts import ADMIN
from cryospy.common.database import create_tables
from cryospy.functions.devices.auth_defence import address_key
from cryospy.functions.index.postgres import Sealer
from cryospy.functions.index.tinydb_files import IndexCorrupt

from .login_limiter import Claim, refusal
from .login_links import DEFAULT_MINUTES, LinkInvalid, check_request, check_token
from .sessions import PendingLogin, StoredSession, new_token

SCHEMA = """
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    token bytea PRIMARY KEY,
    account bytea NOT NULL,
    expires double precision NOT NULL,
    doc bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_account ON dashboard_sessions (account);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires ON dashboard_sessions (expires);
CREATE TABLE IF NOT EXISTS login_attempts (
    id bigserial PRIMARY KEY,
    client bytea,
    at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS login_attempts_client ON login_attempts (client, at);
CREATE INDEX IF NOT EXISTS login_attempts_at ON login_attempts (at);
CREATE TABLE IF NOT EXISTS login_links (
    token bytea PRIMARY KEY,
    expires double precision NOT NULL,
    doc bytea NOT NULL
);
"""
log = logging.getLogger(__name__)
_LIMITER_LOCK = 0x63727973   # the advisory lock every runtime's claims take in turn


def create_login_tables(pool: ConnectionPool) -> None:
    create_tables(pool, "login_state", SCHEMA)


class PostgresSessions:
    """Sessions and pending second-factor logins in ``dashboard_sessions`` (a pending login's token is hashed
    under another name, so it never opens a session)."""

    shared = True

    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes]):
        self._pool = pool
        self._key = key
        self._sealer = Sealer(key)
        create_login_tables(pool)

    def csrf(self, token: str) -> str:
        """The session's CSRF secret: derived from its token, so it is never stored."""
        csrf_key = hmac.new(self._key(), b"cryospy dashboard csrf v1", hashlib.sha256).digest()
        mac = hmac.new(csrf_key, token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _open(self, kind: str, hashed: bytes, blob: bytes) -> dict[str, Any] | None:
        """A row's sealed part, or None for one that does not open (edited or moved in the database, or sealed
        before the admin token changed): that browser logs in again, rather than getting an error page."""
        try:
            doc: dict[str, Any] = self._sealer.open(blob, kind.encode(), hashed)
            return doc
        except IndexCorrupt:
            log.warning("a %s row in dashboard_sessions failed authentication (edited in the database, or the "
                        "admin token changed); it is ignored", kind)
            return None

    def _write(self, kind: str, token: str, account: str, expires: float, doc: dict[str, object],
               now: float) -> None:
        hashed = self._sealer.pseudonym(kind, token)
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM dashboard_sessions WHERE expires < %s", (now,))   # prune on every login
            conn.execute("INSERT INTO dashboard_sessions (token, account, expires, doc) VALUES (%s, %s, %s, %s)",
                         (hashed, self._sealer.pseudonym(f"{kind} account", account), expires,
                          self._sealer.seal(doc, kind.encode(), hashed)))

    def start(self, account: str, expires: float, now: float, must_enrol: bool = False) -> tuple[str, StoredSession]:
        token = new_token()
        self._write("session", token, account, expires, {"account": account, "enrol": must_enrol}, now)
        return token, StoredSession(account, expires, self.csrf(token), must_enrol)

    def _read(self, kind: str, token: str, now: float) -> tuple[float, dict[str, Any]] | None:
        hashed = self._sealer.pseudonym(kind, token)
        with self._pool.connection() as conn:
            row = conn.execute("SELECT expires, doc FROM dashboard_sessions WHERE token = %s AND expires >= %s",
                               (hashed, now)).fetchone()
        doc = self._open(kind, hashed, row[1]) if row else None
        return (float(row[0]), doc) if row is not None and doc is not None else None

    def _delete(self, kind: str, token: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM dashboard_sessions WHERE token = %s", (self._sealer.pseudonym(kind, token),))

    def get(self, token: str, now: float) -> StoredSession | None:
        found = self._read("session", token, now)
        if found is None:
            return None
        expires, doc = found
        return StoredSession(str(doc["account"]), expires, self.csrf(token), bool(doc.get("enrol")))

    def end(self, token: str) -> None:
        self._delete("session", token)

    def end_account(self, account: str, keep: str = "") -> int:
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM dashboard_sessions WHERE account = %s AND token <> %s",
                                (self._sealer.pseudonym("session account", account),
                                 self._sealer.pseudonym("session", keep))).rowcount

    def enrolled(self, token: str) -> None:
        hashed = self._sealer.pseudonym("session", token)
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT doc FROM dashboard_sessions WHERE token = %s FOR UPDATE", (hashed,)).fetchone()
            doc = self._open("session", hashed, row[0]) if row else None
            if doc is None:
                return
            conn.execute("UPDATE dashboard_sessions SET doc = %s WHERE token = %s",
                         (self._sealer.seal({**doc, "enrol": False}, b"session", hashed), hashed))

    def start_pending(self, account: str, via: str, expires: float, now: float) -> str:
        token = new_token()
        self._write("pending", token, account, expires, {"account": account, "via": via}, now)
        return token

    def get_pending(self, token: str, now: float) -> PendingLogin | None:
        found = self._read("pending", token, now)
        if found is None:
            return None
        expires, doc = found
        return PendingLogin(str(doc["account"]), str(doc["via"]), expires)

    def end_pending(self, token: str) -> None:
        self._delete("pending", token)

    def count(self, account: str | None = None) -> int:
        """Rows, live or not yet pruned (of ``account``'s sessions), for tests."""
        with self._pool.connection() as conn:
            if account is None:
                return int(conn.execute("SELECT count(*) FROM dashboard_sessions").fetchone()[0])
            return int(conn.execute("SELECT count(*) FROM dashboard_sessions WHERE account = %s",
                                    (self._sealer.pseudonym("session account", account),)).fetchone()[0])

    def close(self) -> None:
        self._pool.close()


class PostgresLoginLimiter:
    """:class:`~cryospy.web.login_limiter.LoginLimiter`'s budgets counted in ``login_attempts``. A claim is
    one transaction under an advisory lock, so claims from every runtime are counted one at a time, as the
    embedded limiter's lock does within one process."""

    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], per_client: int = 5, window: float = 300.0,
                 global_free: int = 20, global_window: float = 3600.0, max_delay: float = 3600.0,
                 clock: Callable[[], float] | None = None):
        self.limit, self.window = per_client, window
        self.global_free, self.global_window, self.max_delay = global_free, global_window, max_delay
        self._pool = pool
        self._sealer = Sealer(key)
        self._clock = clock
        create_login_tables(pool)

    def _now(self, conn: psycopg.Connection[Any]) -> float:
        if self._clock is not None:
            return self._clock()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        assert row is not None
        return float(row[0])

    def _client(self, ip: str) -> bytes:
        return self._sealer.pseudonym("login client", address_key(ip))

    def claim(self, ip: str) -> Claim:
        client = self._client(ip)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LIMITER_LOCK,))
            now = self._now(conn)
            conn.execute("DELETE FROM login_attempts WHERE at <= %s", (now - self.global_window,))
            mine = [r[0] for r in conn.execute("SELECT at FROM login_attempts WHERE client = %s AND at > %s "
                                               "ORDER BY at", (client, now - self.window))]
            everyone = [r[0] for r in conn.execute("SELECT at FROM login_attempts ORDER BY at")]
            refused = refusal(mine, everyone, now, self.limit, self.window, self.global_free, self.max_delay)
            if refused is not None:
                raise refused    # rolls back: a refused attempt leaves no trace
            ref = conn.execute("INSERT INTO login_attempts (client, at) VALUES (%s, %s) RETURNING id",
                               (client, now)).fetchone()[0]
        return Claim(client.hex(), now, int(ref))

    def succeeded(self, claim: Claim) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM login_attempts WHERE id = %s", (claim.ref,))
            conn.execute("UPDATE login_attempts SET client = NULL WHERE client = %s", (bytes.fromhex(claim.client),))

    def tracked(self) -> int:
        with self._pool.connection() as conn:
            now = self._now(conn)
            return int(conn.execute("SELECT count(DISTINCT client) FROM login_attempts WHERE client IS NOT NULL "
                                    "AND at > %s", (now - self.window,)).fetchone()[0])

    def close(self) -> None:
        self._pool.close()


class PostgresLoginLinks:
    """:class:`~cryospy.web.login_links.LoginLinks` as rows of ``login_links``."""

    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], clock: Callable[[], float] = time.time):
        self._pool = pool
        self._sealer = Sealer(key)
        self._clock = clock
        create_login_tables(pool)

    def issue(self, minutes: int = DEFAULT_MINUTES, account: str = ADMIN) -> str:
        check_request(minutes, account)
        token = secrets.token_urlsafe(32)
        hashed, now = self._sealer.pseudonym("link", token), self._clock()
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM login_links WHERE expires < %s", (now,))
            conn.execute("INSERT INTO login_links (token, expires, doc) VALUES (%s, %s, %s)",
                         (hashed, now + minutes * 60, self._sealer.seal({"account": account}, b"link", hashed)))
        return token

    def check(self, token: str) -> None:
        hashed = self._sealer.pseudonym("link", check_token(token))
        with self._pool.connection() as conn:
            row = conn.execute("SELECT 1 FROM login_links WHERE token = %s AND expires >= %s",
                               (hashed, self._clock())).fetchone()
        if row is None:
            raise LinkInvalid()

    def redeem(self, token: str) -> str:
        hashed = self._sealer.pseudonym("link", check_token(token))
        with self._pool.connection() as conn:
            row = conn.execute("DELETE FROM login_links WHERE token = %s RETURNING expires, doc", (hashed,)).fetchone()
        if row is None or float(row[0]) < self._clock():
            raise LinkInvalid()
        try:
            return str(self._sealer.open(row[1], b"link", hashed)["account"])
        except IndexCorrupt:
            log.warning("a login_links row failed authentication (edited in the database, or the admin token "
                        "changed); the link is refused")
            raise LinkInvalid() from None

    def close(self) -> None:
        self._pool.close()

