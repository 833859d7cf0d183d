"""Connecting to PostgreSQL, the optional shared store (``database_url`` in server.json, docs/postgres.md).

Kept in one place so that every PostgreSQL-backed part (the clip index, the job queue) connects the same way:

* :func:`redacted` is the only form of the URL that may reach a log or an error message (the URL carries the
  database password);
* :func:`open_pool` opens a psycopg connection pool and fails with a message that says what to do, never with
  the URL as given;
* :func:`create_tables` runs a part's ``CREATE … IF NOT EXISTS`` under a transaction-scoped advisory lock, so
  two runtimes starting at once do not race on the catalogue;
* :func:`standalone` lends a pooled connection in autocommit mode for statements that each stand alone. With
  autocommit off, psycopg wraps even one SELECT in BEGIN … COMMIT: three round trips where one does, and a
  clip's ingest makes some thirty such calls (profiled with bench/bench_scale_out.py, docs/scale-out.md).
* :func:`listen` keeps one connection on a ``LISTEN`` channel (other runtimes' changes), reconnecting after a
  loss.

::

    CryoSpyError
    └── DatabaseError     the database cannot be reached or refused a statement the part needs
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.errors import CryoSpyError

log = logging.getLogger(__name__)
SCHEMES = ("postgresql", "postgres")


class DatabaseError(CryoSpyError):
    exit_code = 3


def redacted(url: str) -> str:
    """The URL with its password (and any query, which may carry one too) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username and parts.password is not None else (
            f"{parts.username}@" if parts.username else "")
        return urlunsplit((parts.scheme, user + host, parts.path, "***" if parts.query else "", ""))
    except ValueError:
        return "<an unreadable database URL>"


def check_url(url: str) -> str:
    """A URL CryoSpy can use, or DatabaseError naming what is wrong (without echoing the URL)."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in SCHEMES:
        raise DatabaseError("database_url must look like postgresql://user:password@host:5432/dbname "
                            f"(got {redacted(url)})")
    return url


def open_pool(url: str, *, max_size: int = 8, name: str = "cryospy") -> ConnectionPool:
    """A pool of autocommit-off connections; waits up to 10 s for the first one."""
    check_url(url)
    # timeout: a request waits at most 10 s for a connection, then answers 503 (the database is down or
    # overloaded). check_connection: a connection broken by a database restart is replaced before use (one
    # round trip), so the first requests after PostgreSQL is back work instead of failing on a dead socket.
    pool = ConnectionPool(url, min_size=1, max_size=max_size, name=name, open=False, timeout=10,
                          check=ConnectionPool.check_connection, kwargs={"application_name": name},
                          reset=_transactional)
    try:
        pool.open(wait=True, timeout=10)
    except Exception as exc:   # psycopg_pool.PoolTimeout hides the cause; one more try says what it is
        pool.close()
        try:
            psycopg.connect(url, connect_timeout=5, application_name=name).close()
            cause = str(exc)
        except psycopg.Error as inner:
            cause = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
        raise DatabaseError(f"cannot connect to the database at {redacted(url)}: {cause}. Check that PostgreSQL "
                            "runs, the user and password in database_url are right, and pg_hba.conf lets this "
                            "machine in") from None
    log.info("connected to PostgreSQL at %s", redacted(url))
    return pool


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is down or unreachable (a lost connection, a pool that found no
    connection in time, an administrator's shutdown), which a request should answer with 503 and a retry hint,
    not with a 500: the caller did nothing wrong and it may work in a moment. Other database errors are bugs."""
    return isinstance(exc, psycopg.OperationalError)


def create_tables(pool: ConnectionPool, name: str, ddl: str) -> None:
    """Run ``ddl`` (idempotent statements) once at a time across every process sharing the database."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"cryospy schema {name}".encode()),))
        conn.execute(ddl)


def _transactional(conn: psycopg.Connection[Any]) -> None:
    """The pool's reset: every connection goes back as it came out, autocommit off, so that one lent by
    :func:`standalone` (or turned to autocommit for ``LISTEN``) never reaches a caller that counts on
    ``with pool.connection()`` being one transaction. If this fails, the pool discards the connection."""
    conn.autocommit = False


@contextmanager
def standalone(pool: ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection in autocommit mode, for work whose statements each stand alone (one read, one
    ``INSERT … ON CONFLICT``, one ``UPDATE … RETURNING``): each statement is its own transaction, as it would
    be alone between BEGIN and COMMIT, without those two round trips. Not for statements that must commit
    together: use ``pool.connection()`` and ``conn.transaction()`` for those."""
    with pool.connection() as conn:
        conn.autocommit = True
        yield conn


def listen(pool: ConnectionPool, channel: str, stop: threading.Event,
           hear: Callable[[psycopg.Connection[Any]], None], what: str) -> None:
    """Until ``stop`` is set: take a connection, ``LISTEN`` on ``channel`` and let ``hear`` read its
    notifications (it returns when ``stop`` is set). A lost connection is logged and listened on again 5 s
    later; notifications sent meanwhile are not replayed, so ``hear`` should catch up first."""
    while not stop.is_set():
        try:
            with pool.connection() as conn:
                conn.autocommit = True
                conn.execute(f"LISTEN {channel}")
                try:
                    hear(conn)
                finally:
                    conn.execute(f"UNLISTEN {channel}")
                    conn.autocommit = False
        except Exception:
            if stop.is_set():
                return
            log.warning("lost %s; listening again in 5 s", what, exc_info=True)
            stop.wait(5)
