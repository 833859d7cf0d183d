"""The runtime's queue and dispatcher: dedupe, retry, dead letters, crash recovery, locked keys."""

from __future__ import annotations

from pathlib import Path

from cryospy.functions.errors import KeysLocked, PermanentEventError
from cryospy.infra.dispatcher import Dispatcher
from cryospy.infra.event_routes import Route
from cryospy.infra.jobqueue import JobQueue

EVENT = {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}


def _route(handler) -> Route:
    return Route("h", "b", ("s3:ObjectCreated:*",), "", "", handler)


def test_duplicate_deliveries_become_one_job(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    assert q.put("h", "id-1", EVENT) is True
    assert q.put("h", "id-1", EVENT) is False
    assert q.put("other", "id-1", EVENT) is True
    assert q.counts() == {"pending": 2}


def test_running_jobs_return_to_pending_after_a_crash(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    q.put("h", "id-1", EVENT)
    job = q.claim(0.1)
    assert job is not None and q.counts() == {"running": 1}
    q.close()  # the process dies here, before done()
    q2 = JobQueue(tmp_path / "q.sqlite")
    assert q2.counts() == {"pending": 1}
    again = q2.claim(0.1)
    assert again is not None and again.id == job.id and again.attempts == 2


def test_outcomes(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    calls: list[str] = []

    def handler(event, context):
        calls.append(event["Records"][0]["s3"]["object"]["key"])
        mode = calls[-1]
        if mode == "permanent":
            raise PermanentEventError("object is not a sealed clip")
        if mode == "locked":
            raise KeysLocked("locked")
        if mode == "flaky":
            raise ConnectionError("MinIO restarting")

    d = Dispatcher(q, [_route(handler)], max_attempts=2, base_delay=0.0, locked_delay=60.0)
    for key in ("ok", "permanent", "locked", "flaky"):
        q.put("h", key, {"Records": [{"s3": {"object": {"key": key}}}]})
    for _ in range(4):
        d.run_job(q.claim(0.1))
    assert q.counts() == {"done": 1, "dead": 1, "pending": 2}  # locked waits, flaky will retry
    [dead] = q.dead_letters()
    assert dead["reason"] == "object is not a sealed clip" and dead["attempts"] == 1
    # Waiting for the key costs no attempt; a flaky failure does, and gives up after max_attempts.
    for _ in range(5):
        job = q.claim(0.1)
        if job is None:
            break
        d.run_job(job)
    states = {j["event"]["Records"][0]["s3"]["object"]["key"]: j["reason"] for j in q.dead_letters()}
    assert "gave up after 2 attempts" in states["flaky"]
    locked = q._db.execute("SELECT attempts, state FROM jobs WHERE dedupe='h|locked'").fetchone()
    assert locked == (0, "pending")
    assert q.requeue_dead() == 2 and q.counts()["pending"] == 3  # the two dead + the locked one


def test_unknown_handler_is_dead_lettered(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    q.put("gone", "x", EVENT)
    Dispatcher(q, [_route(lambda e, c: None)]).run_job(q.claim(0.1))
    assert "no handler named 'gone'" in q.dead_letters()[0]["reason"]


def test_old_done_jobs_are_pruned_but_pending_and_dead_ones_stay(tmp_path: Path):
    q = JobQueue(tmp_path / "q.sqlite")
    for identity in ("done-old", "pending", "dead"):
        q.put("h", identity, EVENT)
    job = q.claim(0.1)
    assert job is not None
    q.done(job)
    dead = q.claim(0.1)
    assert dead is not None
    q.dead(dead, "broken")
    assert q.prune_done(older_than_s=3600) == 0          # finished a moment ago: still the dedupe memory
    assert q.put("h", "done-old", EVENT) is False
    assert q.prune_done(older_than_s=0) == 1
    assert q.counts() == {"pending": 1, "dead": 1}
    assert q.put("h", "done-old", EVENT) is True          # a very late duplicate is processed again (idempotent)
