"""The runtime's queue and dispatcher: dedupe, retry, dead letters, crash recovery, locked keys.

Each test runs on both queues: SQLite (the embedded default) and PostgreSQL (a real server,
tests/postgres_server.py), through the ``queue_at`` fixture that opens the same queue again after a "crash".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryospy.common.database import open_pool
from cryospy.functions.errors import KeysLocked, PermanentEventError
from cryospy.functions.events import ObjectEvent
from cryospy.infra.dispatcher import Dispatcher
from cryospy.infra.event_routes import Route
from cryospy.infra.jobqueue import JobQueue, JobStore
from cryospy.infra.pg_jobqueue import PostgresJobQueue


def _event(key: str = "k") -> ObjectEvent:
    return ObjectEvent("s3:ObjectCreated:Put", "b", key, 1, f"etag-{key}", None, None)


EVENT = _event()


def _route(handler) -> Route:
    return Route("h", "b", ("s3:ObjectCreated:*",), "", "", handler)


OpenQueue = Callable[[], JobStore]


@pytest.fixture(params=["sqlite", "postgres"])
def queue_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenQueue]:
    """Opens the test's queue (again: as a restarted runtime would)."""
    opened: list[JobStore] = []
    if request.param == "sqlite":
        def open_queue() -> JobStore:
            opened.append(JobQueue(tmp_path / "q.sqlite"))
            return opened[-1]
    else:
        url = request.getfixturevalue("postgres").fresh_url()

        def open_queue() -> JobStore:
            opened.append(PostgresJobQueue(open_pool(url, max_size=2), owner="runtime-1"))
            return opened[-1]
    yield open_queue
    for q in opened:
        q.close()


def _sql(q: JobStore, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """A look inside the queue's table (the tests' only backdoor; ``?`` placeholders)."""
    if isinstance(q, JobQueue):
        return q._db.execute(sql, params).fetchall()
    assert isinstance(q, PostgresJobQueue)
    with q._pool.connection() as conn:
        cur = conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def test_duplicate_deliveries_become_one_job(queue_at: OpenQueue):
    q = queue_at()
    assert q.put("h", EVENT) is True
    assert q.put("h", EVENT) is False
    assert q.put("h", EVENT, "reconcile|" + EVENT.identity) is True      # the reconciler's own identity
    assert q.put("other", EVENT) is True
    assert q.counts() == {"pending": 3}


def test_running_jobs_return_to_pending_after_a_crash(queue_at: OpenQueue):
    q = queue_at()
    q.put("h", EVENT)
    job = q.claim(0.1)
    assert job is not None and job.event == EVENT and q.counts() == {"running": 1}
    q.close()  # the process dies here, before done()
    q2 = queue_at()
    assert q2.counts() == {"pending": 1}
    again = q2.claim(0.1)
    assert again is not None and again.id == job.id and again.attempts == 2


def test_outcomes(queue_at: OpenQueue):
    q = queue_at()
    calls: list[str] = []

    def handler(event: ObjectEvent) -> None:
        calls.append(event.key)
        mode = calls[-1]
        if mode == "permanent":
            raise PermanentEventError("object is not a sealed clip")
        if mode == "locked":
            raise KeysLocked("locked")
        if mode == "flaky":
            raise ConnectionError("MinIO restarting")

    d = Dispatcher(q, [_route(handler)], max_attempts=2, base_delay=0.0, locked_delay=60.0)
    for key in ("ok", "permanent", "locked", "flaky"):
        q.put("h", _event(key))
    for _ in range(4):
        d.run_job(q.claim(0.1))
    assert q.counts() == {"done": 1, "dead": 1, "pending": 2}  # locked waits, flaky will retry
    [dead] = q.dead_letters()
    assert dead.reason == "object is not a sealed clip" and dead.attempts == 1 and dead.key == "permanent"
    # Waiting for the key costs no attempt; a flaky failure does, and gives up after max_attempts.
    for _ in range(5):
        job = q.claim(0.1)
        if job is None:
            break
        d.run_job(job)
    states = {j.key: j.reason for j in q.dead_letters()}
    assert "gave up after 2 attempts" in states["flaky"]
    locked = _sql(q, "SELECT attempts, state FROM jobs WHERE dedupe=?", "h|" + _event("locked").identity)
    assert locked == [(0, "pending")]
    assert q.requeue_dead() == 2 and q.counts()["pending"] == 3  # the two dead + the locked one


def test_unknown_handler_is_dead_lettered(queue_at: OpenQueue):
    q = queue_at()
    q.put("gone", EVENT)
    Dispatcher(q, [_route(lambda e: None)]).run_job(q.claim(0.1))
    assert "no handler named 'gone'" in q.dead_letters()[0].reason


def test_old_done_jobs_are_pruned_but_pending_and_dead_ones_stay(queue_at: OpenQueue):
    q = queue_at()
    for key in ("done-old", "pending", "dead"):
        q.put("h", _event(key))
    job = q.claim(0.1)
    assert job is not None
    q.done(job)
    dead = q.claim(0.1)
    assert dead is not None
    q.dead(dead, "broken")
    assert q.prune_done(older_than_s=3600) == 0          # finished a moment ago: still the dedupe memory
    assert q.put("h", _event("done-old")) is False
    assert q.prune_done(older_than_s=0) == 1
    assert q.counts() == {"pending": 1, "dead": 1}
    assert q.put("h", _event("done-old")) is True          # a very late duplicate is processed again (idempotent)


def test_the_queue_keeps_the_parsed_event_with_its_decoded_key(queue_at: OpenQueue):
    """What a worker gets is the ObjectEvent the webhook parsed, not an S3 body to parse again."""
    q = queue_at()
    event = ObjectEvent("s3:ObjectCreated:Put", "b", "clips/cam +1/a%2Bb.cse", 7, "e1", "seq", None)
    q.put("h", event)
    [(stored,)] = _sql(q, "SELECT event FROM jobs")
    assert "cam +1/a%2Bb.cse" in stored and "Records" not in stored
    job = q.claim(0.1)
    assert job is not None and job.event == event


def test_jobs_queued_by_an_older_version_still_run_and_show(queue_at: OpenQueue):
    """Queues written before the typed event kept S3-shaped bodies (keys escaped): an upgrade loses none (and a
    migration to PostgreSQL carries such bodies over as they are)."""
    q = queue_at()
    legacy = {"Records": [{"eventName": "s3:ObjectCreated:Put",
                           "s3": {"bucket": {"name": "b"}, "object": {"key": "clips%2Fa+b.cse", "eTag": "x"}}}]}
    _sql(q, "INSERT INTO jobs(dedupe, handler, event, created, updated) VALUES ('old','h',?,0,0)", json.dumps(legacy))
    _sql(q, "INSERT INTO jobs(dedupe, handler, event, state, reason, created, updated) "
            "VALUES ('older','h',?,'dead','broke',0,0)", json.dumps(legacy))
    _sql(q, "INSERT INTO jobs(dedupe, handler, event, created, updated) VALUES ('junk','h','[1]',0,0)")
    job = q.claim(0.1)
    assert job is not None and job.event.key == "clips/a b.cse" and job.event.etag == "x"
    assert q.claim(0.1) is None                        # the unreadable one went to the dead letters instead
    letters = {d.key: d.reason for d in q.dead_letters()}
    assert letters["clips/a b.cse"] == "broke"
    assert "neither a version-1 event nor an S3 notification" in letters[""]


# -- several runtimes on one PostgreSQL queue ----------------------------------------------------------------
@pytest.fixture
def shared_url(postgres: Any) -> str:
    return postgres.fresh_url()


def test_runtimes_claiming_at_once_get_each_job_once(shared_url: str):
    queues = [PostgresJobQueue(open_pool(shared_url, max_size=3), owner=f"runtime-{n}") for n in range(2)]
    try:
        for n in range(60):
            queues[0].put("h", _event(f"k{n}"))
        claimed: list[int] = []
        lock = threading.Lock()

        def work(q: PostgresJobQueue) -> None:
            while (job := q.claim(0.05)) is not None:
                with lock:
                    claimed.append(job.id)
                q.done(job)

        threads = [threading.Thread(target=work, args=(q,)) for q in queues for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(claimed) == 60 and len(set(claimed)) == 60
        assert queues[1].counts() == {"done": 60}
    finally:
        for q in queues:
            q.close()


def test_a_dead_runtimes_job_is_claimed_again_when_its_lease_ends(shared_url: str):
    dying = PostgresJobQueue(open_pool(shared_url, max_size=1), owner="runtime-a", lease_s=0)
    other = PostgresJobQueue(open_pool(shared_url, max_size=1), owner="runtime-b")
    try:
        dying.put("h", EVENT)
        first = dying.claim(0.1)
        assert first is not None        # ... and runtime-a is killed here: no done(), no restart
        again = other.claim(0.1)         # its lease (0 s) has ended: runtime-b takes the job over
        assert again is not None and again.id == first.id and again.attempts == 2
        assert other.claim(0.05) is None  # runtime-b's own lease (60 s) keeps it from a third claimer
        other.done(again)
        assert other.counts() == {"done": 1}
    finally:
        dying.close()
        other.close()
