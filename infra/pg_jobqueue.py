"""The job queue in PostgreSQL, shared by every runtime of a deployment (``database_url``, docs/postgres.md).

The same :class:`~cryospy.infra.jobqueue.JobStore` as the SQLite queue, with what several runtimes need:

* **claiming** takes the oldest ready job with ``FOR UPDATE SKIP LOCKED``, so runtimes claiming at once get
  different jobs and never wait on each other;
* **leases**: a claimed job is ``running`` with ``not_before`` = its lease's end and ``lease`` = a token of
  this one claim. While the runtime works on it, its heartbeat (infra/runtime_registry.py) renews the leases
  of every job it holds in one UPDATE (:meth:`PostgresJobQueue.renew`, :func:`renew_interval`), so a lease
  can be short (``job_lease_seconds``, 60 s by default) and a long job (a big clip's thumbnail) still keeps
  it. A runtime that dies mid-job (SIGKILL, a lost machine) stops renewing; once the lease ends any runtime
  claims the job again, spending an attempt as a retry does. A runtime that restarts takes its own running
  jobs back at once (``owner``: a name stable across its restarts, by default host name and data directory);
* **an outcome belongs to its claim**: done, retry, postpone and dead change a job only while the claim's
  token still holds it. A runtime paused for longer than the lease (a frozen VM, a long cut from the
  database) whose job another runtime took over finishes its handler, finds its claim gone and records
  nothing: the job is never marked done twice, never put back to pending under the runtime now running it,
  never dead-lettered by a stale failure. The handler itself then ran twice, which the handlers allow: each is
  idempotent (functions/clips/ingest.py: outputs keyed by the object key, the index upserts by key, a
  motion mail only from the run that finds the clip new, and then within the shared alert limits);
* **dedupe**, dead letters, requeue and pruning as in SQLite (``INSERT … ON CONFLICT DO NOTHING``);
* times are the database's clock (``clock_timestamp()``), so runtimes on machines whose clocks differ agree
  on what is due and on when a lease ends.

A job put by this process wakes this process's workers at once; one put by another runtime is seen within
``POLL_S``. The stored event is the one the webhook parsed (bucket, object key, size, ETag): what MinIO's
operator sees; no clip metadata is in the queue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import socket
import threading
import time

from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables, standalone
from cryospy.functions.events import MalformedEvent, ObjectEvent

from .jobqueue import DONE_KEPT_SECONDS, ROW_COLUMNS, DeadLetter, Job, JobRow, dead_letter, load_event

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id bigserial PRIMARY KEY,
    dedupe text NOT NULL UNIQUE,
    handler text NOT NULL,
    event text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    not_before double precision NOT NULL DEFAULT 0,
    reason text,
    owner text,
    lease text,
    created double precision NOT NULL,
    updated double precision NOT NULL
);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS lease text;
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (id) WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS jobs_done ON jobs (updated) WHERE state = 'done';
"""
NOW = "extract(epoch from clock_timestamp())"
POLL_S = 0.5
LEASE_S = 60.0                  # job_lease_seconds' default (infra/server_config.py)
LEASE_BOUNDS = (5.0, 3600.0)    # what server.json accepts: a beat every 1.25 s at the shortest
log = logging.getLogger(__name__)


def renew_interval(lease_s: float) -> float:
    """How often a runtime renews its leases: four times a lease, at most every 10 s, so that one or two late
    beats (a busy machine, a slow query) do not lose a job."""
    return min(10.0, lease_s / 4)


class PostgresJobQueue:
    def __init__(self, pool: ConnectionPool, owner: str | None = None, lease_s: float = LEASE_S,
                 recover: bool = True):
        """``pool`` is closed by :meth:`close`; ``owner`` names this runtime across its restarts; ``recover``:
        take back the jobs it was running when it stopped (False for a command that only looks)."""
        self._pool = pool
        self._owner = owner or socket.gethostname()
        self._lease_s = lease_s
        self._wake = threading.Condition()
        self._held: dict[int, str] = {}   # job id → lease token, for every job this process is running
        self._held_lock = threading.Lock()
        create_tables(pool, "jobs", SCHEMA)
        if recover:
            with pool.connection() as conn:
                conn.execute("UPDATE jobs SET state = 'pending', not_before = 0, lease = NULL "
                             "WHERE state = 'running' AND owner = %s", (self._owner,))

    @property
    def lease_s(self) -> float:
        return self._lease_s

    @property
    def owner(self) -> str:
        return self._owner

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def put(self, handler: str, event: ObjectEvent, identity: str | None = None) -> bool:
        with standalone(self._pool) as conn:
            cur = conn.execute(
                f"INSERT INTO jobs (dedupe, handler, event, created, updated) VALUES (%s, %s, %s, {NOW}, {NOW}) "
                "ON CONFLICT (dedupe) DO NOTHING",
                (f"{handler}|{identity or event.identity}", handler, json.dumps(event.to_stored())))
            inserted = bool(cur.rowcount)
        if inserted:
            self._notify()
        return inserted

    def put_dead(self, handler: str, event: ObjectEvent, reason: str) -> None:
        with standalone(self._pool) as conn:
            conn.execute(
                "INSERT INTO jobs (dedupe, handler, event, state, reason, created, updated) "
                f"VALUES (%s, %s, %s, 'dead', %s, {NOW}, {NOW}) ON CONFLICT (dedupe) DO NOTHING",
                (f"{handler}|{event.identity}", handler, json.dumps(event.to_stored()), reason))

    def claim(self, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        while True:
            job = self._claim_one()
            if job is not None:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._wake:
                self._wake.wait(min(remaining, POLL_S))

    def _claim_one(self) -> Job | None:
        """The oldest due job: pending, or running under a lease that ended (its runtime stopped renewing)."""
        while True:
            token = secrets.token_hex(8)
            with standalone(self._pool) as conn:
                row = conn.execute(
                    f"UPDATE jobs SET state = 'running', attempts = attempts + 1, owner = %s, lease = %s, "
                    f"updated = {NOW}, not_before = {NOW} + %s WHERE id = (SELECT id FROM jobs WHERE state IN "
                    f"('pending', 'running') AND not_before <= {NOW} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
                    "RETURNING id, handler, event, attempts", (self._owner, token, self._lease_s)).fetchone()
                if row is None:
                    return None
                try:
                    job = Job(row[0], row[1], load_event(row[2]), row[3], token)
                except MalformedEvent as exc:   # a body no version of the queue wrote: keep it, aside
                    conn.execute(f"UPDATE jobs SET state = 'dead', reason = %s, lease = NULL, updated = {NOW} "
                                 "WHERE id = %s", (str(exc), row[0]))
                    continue
            with self._held_lock:
                self._held[job.id] = token
            return job

    def renew(self) -> list[int]:
        """Extend the lease of every job this process is running, in one UPDATE (the runtime's heartbeat).

        Returns the ids of jobs whose lease was lost: another runtime claimed them after their lease ran out
        (this one was paused or cut off for longer than the lease). They are no longer held; whatever this
        runtime's handler ends with is not recorded (:meth:`done` and the others check the claim)."""
        with self._held_lock:
            held = dict(self._held)
        if not held:
            return []
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"UPDATE jobs SET not_before = {NOW} + %s FROM unnest(%s::bigint[], %s::text[]) AS held(id, lease) "
                "WHERE jobs.id = held.id AND jobs.lease = held.lease AND jobs.state = 'running' RETURNING jobs.id",
                (self._lease_s, list(held), list(held.values()))).fetchall()
        renewed = {row[0] for row in rows}
        lost: list[int] = []
        with self._held_lock:   # a job finished meanwhile left _held before its outcome was written: not lost
            for job_id, token in held.items():
                if job_id not in renewed and self._held.get(job_id) == token:
                    del self._held[job_id]
                    lost.append(job_id)
        for job_id in lost:
            log.warning("job %s: its lease of %g s ran out before this runtime renewed it (paused, or cut off "
                        "from the database?) and another runtime took it over; that runtime's outcome stands",
                        job_id, self._lease_s)
        return lost

    def held(self) -> int:
        """How many jobs this process is running (the runtime registry shows it)."""
        with self._held_lock:
            return len(self._held)

    def done(self, job: Job) -> None:
        self._set(job, "done", None, 0)

    def retry(self, job: Job, delay: float, reason: str) -> None:
        self._set(job, "pending", reason, delay)

    def postpone(self, job: Job, delay: float, reason: str) -> None:
        """Back to pending without spending an attempt (the job waits on something outside it)."""
        self._release(job)
        with standalone(self._pool) as conn:
            n = conn.execute(f"UPDATE jobs SET state = 'pending', attempts = attempts - 1, reason = %s, lease = NULL, "
                             f"not_before = {NOW} + %s, updated = {NOW} WHERE id = %s AND lease = %s "
                             "AND state = 'running'", (reason, delay, job.id, job.lease)).rowcount
        self._recorded(job, "postponed", n)

    def dead(self, job: Job, reason: str) -> None:
        self._set(job, "dead", reason, None)

    def _set(self, job: Job, state: str, reason: str | None, delay: float | None) -> None:
        """``delay``: seconds until the job is due again (None: never, as for done and dead jobs). Only while
        ``job``'s claim still holds the job: a claim another runtime took over records nothing."""
        self._release(job)
        with standalone(self._pool) as conn:
            n = conn.execute(f"UPDATE jobs SET state = %s, reason = %s, lease = NULL, not_before = "
                             f"CASE WHEN %s::float8 IS NULL THEN 0 ELSE {NOW} + %s::float8 END, updated = {NOW} "
                             "WHERE id = %s AND lease = %s AND state = 'running'",
                             (state, reason, delay, delay, job.id, job.lease)).rowcount
        self._recorded(job, state, n)

    def _release(self, job: Job) -> None:
        """No more renewals for ``job``: its outcome is being written (before the write, so a renewal racing it
        does not report a finished job as lost)."""
        with self._held_lock:
            if self._held.get(job.id) == job.lease:
                del self._held[job.id]

    def _recorded(self, job: Job, outcome: str, rows: int) -> None:
        if rows:
            self._notify()
        else:
            log.warning("job %s (%s of %s): not recorded as %s, another runtime took it over after this one's "
                        "lease ran out; the handler ran on both, which is harmless (handlers are idempotent)",
                        job.id, job.handler, job.event.key, outcome)

    def dead_letters(self) -> list[DeadLetter]:
        with standalone(self._pool) as conn:
            rows = conn.execute("SELECT id, handler, event, attempts, reason, updated FROM jobs WHERE state = 'dead' "
                                "ORDER BY id").fetchall()
        return [dead_letter(*row) for row in rows]

    def requeue_dead(self, job_id: int | None = None) -> int:
        where, params = ("AND id = %s", (job_id,)) if job_id is not None else ("", ())
        with standalone(self._pool) as conn:
            n = conn.execute("UPDATE jobs SET state = 'pending', attempts = 0, not_before = 0 "
                             f"WHERE state = 'dead' {where}", params).rowcount
        self._notify()
        return n

    def prune_done(self, older_than_s: float = DONE_KEPT_SECONDS) -> int:
        """As :meth:`JobQueue.prune_done <cryospy.infra.jobqueue.JobQueue.prune_done>`."""
        with standalone(self._pool) as conn:
            return conn.execute(f"DELETE FROM jobs WHERE state = 'done' AND updated < {NOW} - %s",
                                (older_than_s,)).rowcount

    def counts(self) -> dict[str, int]:
        with standalone(self._pool) as conn:
            rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        return {state: int(n) for state, n in rows}

    # -- transfer (infra/db_migrate.py) --------------------------------------------------------------
    def export_rows(self) -> list[JobRow]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM jobs ORDER BY id").fetchall()
        return [JobRow(*row) for row in rows]

    def import_rows(self, rows: list[JobRow]) -> None:
        """As :meth:`JobQueue.import_rows <cryospy.infra.jobqueue.JobQueue.import_rows>`, in one transaction;
        the id sequence moves past the highest id imported."""
        with self._pool.connection() as conn, conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO jobs ({ROW_COLUMNS}) VALUES ({', '.join(['%s'] * 10)})",
                                [dataclasses.astuple(r) for r in rows])
            conn.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), COALESCE(max(id), 0) + 1, false) "
                         "FROM jobs")
        self._notify()

    def clear(self) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM jobs")

    def close(self) -> None:
        self._pool.close()
