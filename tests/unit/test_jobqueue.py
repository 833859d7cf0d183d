"""The runtime's queue and dispatcher: dedupe, retry, dead letters, crash recovery, locked keys."""

from __future__ import annotations

import json
from pathlib import Path

from cryospy.functions.errors import KeysLocked, PermanentEventError
from cryospy.functions.events import ObjectEvent
from cryospy.infra.dispatcher import Dispatcher
from cryospy.infra.event_routes import Route
from cryospy.infra.jobqueue import JobQueue


def _event(key: str = "k") -> ObjectEvent:
    return ObjectEvent("s3:ObjectCreated:Put", "b", key, 1, f"etag-{key}", None, None)


EVENT = _event()


def _route(handler) -> Route:
    return Route("h", "b", ("s3:ObjectCreated:*",), "", "", handler)


def test_duplicate_deliveries_become_one_job(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    assert q.put("h", EVENT) is True
    assert q.put("h", EVENT) is False
    assert q.put("h", EVENT, "reconcile|" + EVENT.identity) is True      # the reconciler's own identity
    assert q.put("other", EVENT) is True
    assert q.counts() == {"pending": 3}


def test_running_jobs_return_to_pending_after_a_crash(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    q.put("h", EVENT)
    job = q.claim(0.1)
    assert job is not None and job.event == EVENT and q.counts() == {"running": 1}
    q.close()  # the process dies here, before done()
    q2 = JobQueue(tmp_path / "q.sqlite")
    assert q2.counts() == {"pending": 1}
    again = q2.claim(0.1)
    assert again is not None and again.id == job.id and again.attempts == 2


def test_outcomes(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
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
    locked = q._db.execute("SELECT attempts, state FROM jobs WHERE dedupe=?", ("h|" + _event("locked").identity,)
                           ).fetchone()
    assert locked == (0, "pending")
    assert q.requeue_dead() == 2 and q.counts()["pending"] == 3  # the two dead + the locked one


def test_unknown_handler_is_dead_lettered(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    q.put("gone", EVENT)
    Dispatcher(q, [_route(lambda e: None)]).run_job(q.claim(0.1))
    assert "no handler named 'gone'" in q.dead_letters()[0].reason


def test_old_done_jobs_are_pruned_but_pending_and_dead_ones_stay(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
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


def test_the_queue_keeps_the_parsed_event_with_its_decoded_key(tmp_path: Path):
    """What a worker gets is the ObjectEvent the webhook parsed, not an S3 body to parse again."""
    q = JobQueue(tmp_path / "q.sqlite")
    event = ObjectEvent("s3:ObjectCreated:Put", "b", "clips/cam +1/a%2Bb.cse", 7, "e1", "seq", None)
    q.put("h", event)
    stored = q._db.execute("SELECT event FROM jobs").fetchone()[0]
    assert "cam +1/a%2Bb.cse" in stored and "Records" not in stored
    job = q.claim(0.1)
    assert job is not None and job.event == event


def test_jobs_queued_by_an_older_version_still_run_and_show(tmp_path: Path):
    """Queues written before the typed event kept S3-shaped bodies (keys escaped): an upgrade loses none."""
    q = JobQueue(tmp_path / "q.sqlite")
    legacy = {"Records": [{"eventName": "s3:ObjectCreated:Put",
                           "s3": {"bucket": {"name": "b"}, "object": {"key": "clips%2Fa+b.cse", "eTag": "x"}}}]}
    q._db.execute("INSERT INTO jobs(dedupe, handler, event, created, updated) VALUES ('old','h',?,0,0)",
                  (json.dumps(legacy),))
    q._db.execute("INSERT INTO jobs(dedupe, handler, event, state, reason, created, updated) "
                  "VALUES ('older','h',?,'dead','broke',0,0)", (json.dumps(legacy),))
    q._db.execute("INSERT INTO jobs(dedupe, handler, event, created, updated) VALUES ('junk','h','[1]',0,0)")
    job = q.claim(0.1)
    assert job is not None and job.event.key == "clips/a b.cse" and job.event.etag == "x"
    assert q.claim(0.1) is None                        # the unreadable one went to the dead letters instead
    letters = {d.key: d.reason for d in q.dead_letters()}
    assert letters["clips/a b.cse"] == "broke"
    assert "neither a version-1 event nor an S3 notification" in letters[""]
