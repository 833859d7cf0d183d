"""The runtimes sharing one database, as each records itself, and the heartbeat that keeps that record and the
leases of its jobs fresh (``database_url``; docs/postgres.md, docs/scale-out.md "A runtime that dies").

Every runtime on PostgreSQL has a row in ``runtimes``: its name (host and data directory, the job queue's
``owner``: infra/stores.runtime_name), its URL (the device API and MinIO's webhook target, which MinIO's
operator sees in the webhook configuration anyway), when it started, its last heartbeat, its lease and how
many jobs it is running. One :class:`Heartbeat` thread per runtime, every
:func:`~cryospy.infra.pg_jobqueue.renew_interval`, renews the leases of the jobs the runtime is running (one
UPDATE) and then writes its row (one upsert): a runtime whose row is fresh is one whose jobs nobody takes
over. A runtime that stops cleanly marks itself stopped; one that dies leaves its row as it was, and Admin →
System status on any runtime shows it *silent since* its last heartbeat once that is older than its lease,
which is when its jobs become free for the others to take over. A row silent for :data:`FORGET_AFTER_S` is
deleted by any runtime's next heartbeat, so a runtime removed for good drops off the list.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables

from .pg_jobqueue import NOW, PostgresJobQueue, renew_interval

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runtimes (
    name text PRIMARY KEY,
    url text NOT NULL,
    started double precision NOT NULL,
    heartbeat double precision NOT NULL,
    lease_seconds double precision NOT NULL,
    running integer NOT NULL DEFAULT 0,
    stopped double precision
);
"""
FORGET_AFTER_S = 7 * 86400
COLUMNS = f"name, url, started, heartbeat, lease_seconds, running, stopped, {NOW} - heartbeat"


@dataclass(frozen=True)
class RuntimeRecord:
    """One runtime's row. Times are seconds since the epoch by the database's clock; ``silent_s`` is how long
    ago its last heartbeat was, by the same clock (runtimes whose own clocks differ still agree on it)."""
    name: str
    url: str
    started: float
    heartbeat: float
    lease_s: float
    running: int
    stopped: float | None
    silent_s: float

    @property
    def state(self) -> str:
        """``stopped`` (it said so), ``silent`` (no heartbeat for longer than its lease: its jobs are being
        taken over) or ``alive``."""
        if self.stopped is not None:
            return "stopped"
        return "silent" if self.silent_s > self.lease_s else "alive"


class RuntimeRegistry:
    """The ``runtimes`` table, written for runtime ``name`` and read for all of them."""

    def __init__(self, pool: ConnectionPool, name: str, url: str, lease_s: float):
        self._pool = pool
        self.name, self.url, self.lease_s = name, url, lease_s
        create_tables(pool, "runtimes", SCHEMA)

    def register(self, running: int = 0) -> None:
        """This runtime starts (again): its row, with a new start time."""
        self._upsert(running, "started = EXCLUDED.started, ")

    def beat(self, running: int) -> None:
        """This runtime is alive and runs ``running`` jobs; rows silent for a week are forgotten."""
        self._upsert(running, "")
        with self._pool.connection() as conn:
            conn.execute(f"DELETE FROM runtimes WHERE heartbeat < {NOW} - %s", (FORGET_AFTER_S,))

    def _upsert(self, running: int, restart: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO runtimes (name, url, started, heartbeat, lease_seconds, running) "
                f"VALUES (%s, %s, {NOW}, {NOW}, %s, %s) ON CONFLICT (name) DO UPDATE SET {restart}"
                "url = EXCLUDED.url, heartbeat = EXCLUDED.heartbeat, lease_seconds = EXCLUDED.lease_seconds, "
                "running = EXCLUDED.running, stopped = NULL", (self.name, self.url, self.lease_s, running))

    def mark_stopped(self) -> None:
        with self._pool.connection() as conn:
            conn.execute(f"UPDATE runtimes SET stopped = {NOW}, heartbeat = {NOW}, running = 0 WHERE name = %s",
                         (self.name,))

    def list(self) -> list[RuntimeRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {COLUMNS} FROM runtimes ORDER BY started, name").fetchall()
        return [RuntimeRecord(*row) for row in rows]

    def close(self) -> None:
        self._pool.close()


class Heartbeat:
    """The runtime's heartbeat: renew the leases of its running jobs, then its row in the registry.

    A beat that fails (the database briefly unreachable) is logged and the next one tries again: the leases
    are four beats long, so one lost beat costs nothing."""

    def __init__(self, queue: PostgresJobQueue, registry: RuntimeRegistry, interval: float | None = None):
        self.queue = queue
        self.registry = registry
        self.interval = interval if interval is not None else renew_interval(queue.lease_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.registry.register(self.queue.held())
        self._thread = threading.Thread(target=self._run, name="cryospy-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            self.queue.renew()
            self.registry.beat(self.queue.held())
        except psycopg.Error as exc:   # psycopg_pool's PoolTimeout is one too
            log.warning("heartbeat: the database did not answer (%s); the leases of this runtime's %d running "
                        "job(s) last %g s from the previous beat", exc, self.queue.held(), self.queue.lease_s)

    def stop(self) -> None:
        """After the workers stopped (a job still running past their stop is left to its lease): say this runtime
        stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.registry.mark_stopped()
        except psycopg.Error as exc:
            log.warning("could not mark this runtime stopped in the database (%s): it shows as silent instead", exc)

    def close(self) -> None:
        self.registry.close()


class NoHeartbeat:
    """The embedded queue's stand-in: one runtime, no leases to renew, no registry to write."""
    registry = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass
