"""A durable job queue on SQLite: the runtime's own queue between the webhook and the handlers.

The webhook only inserts and acknowledges (MinIO's queue blocks behind a slow receiver), workers claim and
run. A job's dedupe key is ``handler|event identity``, so a redelivered event is dropped at insert time when
it is already known. States: pending → running → done, or → dead with a reason. Jobs left ``running`` by a
crash go back to pending at start-up, so a SIGKILL loses nothing.

:class:`JobStore` is what the webhook, the dispatcher, the reconciler and the admin pages use; this SQLite
queue is the embedded default and :class:`~cryospy.infra.pg_jobqueue.PostgresJobQueue` the shared one
(``database_url``), both held to the same tests (tests/unit/test_jobqueue.py).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryospy.functions.events import MalformedEvent, ObjectEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe TEXT NOT NULL UNIQUE,
    handler TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    reason TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(state, not_before, id);
"""


DONE_KEPT_SECONDS = 7 * 86400
ROW_COLUMNS = "id, dedupe, handler, event, state, attempts, not_before, reason, created, updated"


@dataclass(frozen=True)
class Job:
    id: int
    handler: str
    event: ObjectEvent
    attempts: int
    # The claim that holds the job (PostgreSQL: a token per claim; an outcome is recorded only while this
    # claim still holds the job's lease). Empty in the embedded queue, whose one process is the only claimer.
    lease: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """A job that will not run again unless an admin retries it. ``event`` is None only for a stored body
    that no longer reads as an event (then ``reason`` says so); ``key`` is always printable."""
    id: int
    handler: str
    event: ObjectEvent | None
    attempts: int
    reason: str
    updated: float

    @property
    def key(self) -> str:
        return self.event.key if self.event is not None else ""


@dataclass(frozen=True)
class JobRow:
    """A queue row as stored: what ``cryospy db migrate`` moves between queues (infra/db_migrate.py). Times are
    seconds since the epoch in both stores."""
    id: int
    dedupe: str
    handler: str
    event: str
    state: str
    attempts: int
    not_before: float
    reason: str | None
    created: float
    updated: float

    def at_rest(self) -> JobRow:
        """The row as it is in a queue no runtime holds: a job left running is pending again (as a restarting
        runtime makes it), due at once."""
        return dataclasses.replace(self, state="pending", not_before=0.0) if self.state == "running" else self


class JobStore(Protocol):
    def put(self, handler: str, event: ObjectEvent, identity: str | None = None) -> bool: ...
    def put_dead(self, handler: str, event: ObjectEvent, reason: str) -> None: ...
    def claim(self, timeout: float) -> Job | None: ...
    def done(self, job: Job) -> None: ...
    def retry(self, job: Job, delay: float, reason: str) -> None: ...
    def postpone(self, job: Job, delay: float, reason: str) -> None: ...
    def dead(self, job: Job, reason: str) -> None: ...
    def dead_letters(self) -> list[DeadLetter]: ...
    def requeue_dead(self, job_id: int | None = None) -> int: ...
    def prune_done(self, older_than_s: float = DONE_KEPT_SECONDS) -> int: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


def load_event(stored: str) -> ObjectEvent:
    """A stored event body back into the event (MalformedEvent for one no version of the queue wrote)."""
    try:
        return ObjectEvent.from_stored(json.loads(stored))
    except ValueError as exc:
        raise MalformedEvent(f"stored event is not JSON: {exc}") from None


def dead_letter(job_id: int, handler: str, stored: str, attempts: int, reason: str | None,
                updated: float) -> DeadLetter:
    try:
        event: ObjectEvent | None = load_event(stored)
    except MalformedEvent:
        event = None
    return DeadLetter(job_id, handler, event, attempts, reason or "", updated)


class JobQueue:
    def __init__(self, path: Path, recover: bool = True):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        if recover:   # this process is the runtime: what it left running, it died running
            with self._lock:
                self._db.execute("UPDATE jobs SET state='pending' WHERE state='running'")

    def put(self, handler: str, event: ObjectEvent, identity: str | None = None) -> bool:
        """Insert a job unless the same handler already has this event (by ``identity``, the event's own by
        default); returns True when inserted."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs(dedupe, handler, event, created, updated) VALUES (?,?,?,?,?)",
                (f"{handler}|{identity or event.identity}", handler, json.dumps(event.to_stored()), now, now))
            if cur.rowcount:
                self._wake.notify_all()
            return bool(cur.rowcount)

    def put_dead(self, handler: str, event: ObjectEvent, reason: str) -> None:
        """Record an event that will never be processed, so an admin can see it (`cryospy events dead`)."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO jobs(dedupe, handler, event, state, reason, created, updated) "
                "VALUES (?,?,?,'dead',?,?,?)",
                (f"{handler}|{event.identity}", handler, json.dumps(event.to_stored()), reason, now, now))

    def claim(self, timeout: float) -> Job | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                row = self._db.execute(
                    "SELECT id, handler, event, attempts FROM jobs WHERE state='pending' AND not_before<=? "
                    "ORDER BY id LIMIT 1", (time.time(),)).fetchone()
                if row:
                    try:
                        event = load_event(row[2])
                    except MalformedEvent as exc:     # a body no version of the queue wrote: keep it, aside
                        self._db.execute("UPDATE jobs SET state='dead', reason=?, updated=? WHERE id=?",
                                         (str(exc), time.time(), row[0]))
                        continue
                    self._db.execute("UPDATE jobs SET state='running', attempts=attempts+1, updated=? WHERE id=?",
                                     (time.time(), row[0]))
                    return Job(row[0], row[1], event, row[3] + 1)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._wake.wait(min(remaining, 0.5))

    def done(self, job: Job) -> None:
        self._set(job.id, "done", None, 0)

    def retry(self, job: Job, delay: float, reason: str) -> None:
        self._set(job.id, "pending", reason, time.time() + delay)

    def postpone(self, job: Job, delay: float, reason: str) -> None:
        """Back to pending without spending an attempt (the job waits on something outside it)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET state='pending', attempts=attempts-1, reason=?, not_before=?, "
                             "updated=? WHERE id=?", (reason, time.time() + delay, time.time(), job.id))
            self._wake.notify_all()

    def dead(self, job: Job, reason: str) -> None:
        self._set(job.id, "dead", reason, 0)

    def _set(self, job_id: int, state: str, reason: str | None, not_before: float) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state=?, reason=?, not_before=?, updated=? WHERE id=?",
                             (state, reason, not_before, time.time(), job_id))
            self._wake.notify_all()

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, handler, event, attempts, reason, updated FROM jobs WHERE state='dead' ORDER BY id"
            ).fetchall()
        return [dead_letter(*row) for row in rows]

    def requeue_dead(self, job_id: int | None = None) -> int:
        with self._lock:
            if job_id is None:
                cur = self._db.execute("UPDATE jobs SET state='pending', attempts=0, not_before=0 "
                                       "WHERE state='dead'")
            else:
                cur = self._db.execute("UPDATE jobs SET state='pending', attempts=0, not_before=0 "
                                       "WHERE state='dead' AND id=?", (job_id,))
            self._wake.notify_all()
            return cur.rowcount

    def prune_done(self, older_than_s: float = DONE_KEPT_SECONDS) -> int:
        """Forget finished jobs older than ``older_than_s``; returns how many.

        A done row is only the memory that de-duplicates a repeated notification for the same object version, and
        MinIO redelivers within minutes, not days; without pruning the queue grows by every clip ever recorded.
        Should a very late duplicate arrive anyway, the handlers are idempotent (the index upserts by key)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM jobs WHERE state='done' AND updated<?", (time.time() - older_than_s,))
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    # -- transfer (infra/db_migrate.py) --------------------------------------------------------------
    def export_rows(self) -> list[JobRow]:
        with self._lock:
            rows = self._db.execute(f"SELECT {ROW_COLUMNS} FROM jobs ORDER BY id").fetchall()
        return [JobRow(*row) for row in rows]

    def import_rows(self, rows: list[JobRow]) -> None:
        """Insert rows as they are, ids included (a dead letter keeps the number `cryospy events retry --id`
        takes); a clash with a row already here fails the whole import."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(f"INSERT INTO jobs ({ROW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                     [dataclasses.astuple(r) for r in rows])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._wake.notify_all()

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs")

    def close(self) -> None:
        with self._lock:
            self._db.close()
