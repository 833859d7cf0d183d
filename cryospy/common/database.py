"""Connecting to PostgreSQL, the optional shared store (``database_url`` in server.json, docs/postgres.md).

Kept in one place so that every PostgreSQL-backed part (the clip index, the job queue) connects the same way:

* :func:`redacted` is the only form of the URL that may reach a log or an error message (the URL carries the
  database password);
* :func:`open_pool` opens a psycopg connection pool and fails with a message that says what to do, never with
  the URL as given;
* :func:`create_tables` runs a part's ``CREATE … IF NOT EXISTS`` under a transaction-scoped advisory lock, so
  two runtimes starting at once do not race on the catalogue;
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
from collections.abc import Callable
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
    pool = ConnectionPool(url, min_size=1, max_size=max_size, name=name, open=False, timeout=30,
                          kwargs={"application_name": name})
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


def create_tables(pool: ConnectionPool, name: str, ddl: str) -> None:
    """Run ``ddl`` (idempotent statements) once at a time across every process sharing the database."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"cryospy schema {name}".encode()),))
        conn.execute(ddl)


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
