"""Leases on the shared job queue and the runtime registry (issue 18 item 4, docs/scale-out.md "A runtime that
dies"): a runtime that renews keeps a job longer than its lease; a runtime whose lease was taken over records
no outcome for that job; each runtime's heartbeat shows it alive, silent or stopped; ``job_lease_seconds`` in
server.json. Real PostgreSQL (tests/postgres_server.py), several queues on one database standing for runtimes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.functions.errors import PermanentEventError
from cryospy.functions.events import ObjectEvent
from cryospy.infra.dispatcher import Dispatcher
from cryospy.infra.event_routes import Route
from cryospy.infra.pg_jobqueue import LEASE_S, PostgresJobQueue, renew_interval
from cryospy.infra.runtime_registry import Heartbeat, RuntimeRegistry
from cryospy.infra.server_config import ServerConfigError, load_server_config
from tests.support import wait_for

EVENT = ObjectEvent("s3:ObjectCreated:Put", "b", "clips/k.cse", 1, "etag-k", None, None)


@pytest.fixture
def url(postgres: Any) -> str:
    return postgres.fresh_url()


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    """Queues and registries a test opens, closed at its end."""
    items: list[Any] = []
    yield items
    for item in reversed(items):
        item.close()


def _queue(url: str, opened: list[Any], owner: str, lease_s: float) -> PostgresJobQueue:
    opened.append(PostgresJobQueue(open_pool(url, max_size=3), owner=owner, lease_s=lease_s))
    return opened[-1]


def _registry(url: str, opened: list[Any], name: str, lease_s: float) -> RuntimeRegistry:
    opened.append(RuntimeRegistry(open_pool(url, max_size=2), name, f"http://{name.split(':')[0]}.lan:8480",
                                  lease_s))
    return opened[-1]


def _row(q: PostgresJobQueue, job_id: int) -> tuple[Any, ...]:
    with q._pool.connection() as conn:   # the tests' look inside the table
        return conn.execute("SELECT state, owner, attempts, reason, updated FROM jobs WHERE id = %s",
                            (job_id,)).fetchone()


def _db_seconds_since(q: PostgresJobQueue, when: float) -> float:
    with q._pool.connection() as conn:
        return conn.execute("SELECT extract(epoch from clock_timestamp()) - %s", (when,)).fetchone()[0]


def test_a_job_longer_than_its_lease_stays_with_the_runtime_that_renews_it(url: str, opened: list[Any]):
    lease = 2.0
    a, b = _queue(url, opened, "runtime-a", lease), _queue(url, opened, "runtime-b", lease)
    heartbeat = Heartbeat(a, _registry(url, opened, "runtime-a", lease))
    assert heartbeat.interval == renew_interval(lease) == lease / 4
    started, release = threading.Event(), threading.Event()
    ran_on_b: list[str] = []

    def long_job(event: ObjectEvent) -> None:   # a big clip's thumbnail: longer than several leases
        started.set()
        assert release.wait(120)

    on_a = Dispatcher(a, [Route("h", "b", ("s3:ObjectCreated:*",), "", "", long_job)], workers=1)
    on_b = Dispatcher(b, [Route("h", "b", ("s3:ObjectCreated:*",), "", "", lambda e: ran_on_b.append(e.key))],
                      workers=2)
    heartbeat.start()
    on_a.start()
    try:
        a.put("h", EVENT)
        wait_for(started.is_set, what="runtime A running the job")
        on_b.start()   # runtime B claims all the while
        job_id = _only_job(a)
        claimed_at = _row(a, job_id)[4]
        wait_for(lambda: _db_seconds_since(a, claimed_at) > 3 * lease, timeout=60,
                 what="three leases passing by the database's clock")
        assert _row(a, job_id)[:3] == ("running", "runtime-a", 1)   # renewed, never taken over
        assert a.held() == 1
        release.set()
        wait_for(lambda: _row(a, job_id)[0] == "done", what="runtime A finishing the job")
        assert _row(a, job_id)[:3] == ("done", "runtime-a", 1) and ran_on_b == []
    finally:
        release.set()
        on_a.stop()
        on_b.stop()
        heartbeat.stop()


def _only_job(q: PostgresJobQueue) -> int:
    with q._pool.connection() as conn:
        return conn.execute("SELECT id FROM jobs").fetchone()[0]


def test_the_old_owner_finishing_after_a_takeover_records_nothing(url: str, opened: list[Any]):
    paused = _queue(url, opened, "runtime-a", 0)     # its lease ends at once: as if paused longer than it
    other = _queue(url, opened, "runtime-b", LEASE_S)
    paused.put("h", EVENT)
    stale = paused.claim(0.1)
    assert stale is not None and paused.held() == 1
    taken = other.claim(0.1)
    assert taken is not None and taken.id == stale.id and taken.attempts == 2 and taken.lease != stale.lease
    assert paused.renew() == [stale.id] and paused.held() == 0   # its heartbeat notices the takeover
    assert other.renew() == [] and other.held() == 1

    # The paused runtime wakes up and its handler ends, every way a handler can: nothing of it is recorded.
    paused.done(stale)
    paused.retry(stale, 0, "MinIO unreachable")
    paused.postpone(stale, 0, "waiting for the private key to be unlocked")
    paused.dead(stale, "a stale failure")
    assert _row(other, taken.id)[:4] == ("running", "runtime-b", 2, None)
    assert other.claim(0.05) is None and paused.claim(0.05) is None   # still leased to runtime-b

    other.done(taken)
    done_at = _row(other, taken.id)[4]
    paused.done(stale)            # the old owner finishing after the new one: still done once
    paused.dead(stale, "late")
    assert _row(other, taken.id) == ("done", "runtime-b", 2, None, done_at)
    assert other.counts() == {"done": 1} and other.dead_letters() == []


def test_a_stale_failure_neither_retries_nor_dead_letters_the_job_another_runtime_holds(url: str,
                                                                                      opened: list[Any]):
    paused = _queue(url, opened, "runtime-a", 0)
    other = _queue(url, opened, "runtime-b", LEASE_S)
    stale, taken = [], []
    for key in ("clips/one.cse", "clips/two.cse"):   # each claimed by the paused runtime, then taken over
        paused.put("h", ObjectEvent("s3:ObjectCreated:Put", "b", key, 1, f"etag-{key}", None, None))
        stale.append(paused.claim(0.1))
        taken.append(other.claim(0.1))
    assert None not in stale and [j.id for j in taken] == [j.id for j in stale]   # type: ignore[union-attr]

    def fail(event: ObjectEvent) -> None:
        if event.key == "clips/one.cse":
            raise ConnectionError("MinIO unreachable")
        raise PermanentEventError("not a clip")

    dispatcher = Dispatcher(paused, [Route("h", "b", ("s3:ObjectCreated:*",), "", "", fail)], max_attempts=1)
    for job in stale:
        dispatcher.run_job(job)   # type: ignore[arg-type]
    assert other.counts() == {"running": 2} and other.dead_letters() == []
    for job in taken:
        other.done(job)   # type: ignore[arg-type]
    assert other.counts() == {"done": 2}


def test_a_finished_job_is_not_reported_lost(url: str, opened: list[Any]):
    q = _queue(url, opened, "runtime-a", LEASE_S)
    q.put("h", EVENT)
    job = q.claim(0.1)
    assert job is not None and q.renew() == [] and q.held() == 1
    q.done(job)
    assert q.held() == 0 and q.renew() == []


def test_the_registry_shows_each_runtime_alive_silent_or_stopped(url: str, opened: list[Any]):
    a_queue = _queue(url, opened, "host-a:/var/lib/cryospy", 30)
    a = Heartbeat(a_queue, _registry(url, opened, "host-a:/var/lib/cryospy", 30), interval=0.2)
    b = Heartbeat(_queue(url, opened, "host-b:/srv/cryospy", 0.5),
                  _registry(url, opened, "host-b:/srv/cryospy", 0.5), interval=3600)   # never beats again
    a_queue.put("h", EVENT)
    job = a_queue.claim(0.1)
    a.start()
    b.start()
    try:
        wait_for(lambda: _by_name(a.registry)["host-a:/var/lib/cryospy"].running == 1, what="A's beat")
        records = _by_name(a.registry)
        assert set(records) == {"host-a:/var/lib/cryospy", "host-b:/srv/cryospy"}
        assert records["host-a:/var/lib/cryospy"].state == "alive"
        assert records["host-a:/var/lib/cryospy"].url == "http://host-a.lan:8480"
        wait_for(lambda: _by_name(a.registry)["host-b:/srv/cryospy"].state == "silent",
                 what="B silent once its lease passed without a beat")
        silent = _by_name(a.registry)["host-b:/srv/cryospy"]
        assert silent.silent_s > silent.lease_s == 0.5 and silent.stopped is None
        a_queue.done(job)   # type: ignore[arg-type]
        wait_for(lambda: _by_name(b.registry)["host-a:/var/lib/cryospy"].running == 0, what="A's next beat")
    finally:
        a.stop()
    stopped = _by_name(b.registry)["host-a:/var/lib/cryospy"]
    assert stopped.state == "stopped" and stopped.stopped is not None
    a.registry.register()   # the runtime starts again: alive, with a new start time
    again = _by_name(b.registry)["host-a:/var/lib/cryospy"]
    assert again.state == "alive" and again.started >= stopped.started
    b.stop()


def _by_name(registry: RuntimeRegistry) -> dict[str, Any]:
    return {r.name: r for r in registry.list()}


# -- job_lease_seconds in server.json ----------------------------------------------------------------------
def _config(tmp_path: Path, doc: dict[str, Any]) -> Any:
    path = tmp_path / "server.json"
    path.write_text(json.dumps(doc))
    return load_server_config(path)


def test_the_lease_is_set_in_server_json_within_bounds(tmp_path: Path):
    db = "postgresql://cryospy:pw@db.lan/cryospy"
    assert _config(tmp_path, {"database_url": db}).job_lease_seconds == LEASE_S == 60
    assert _config(tmp_path, {"database_url": db, "job_lease_seconds": 5}).job_lease_seconds == 5
    for bad in (4, 3601, "60", True, None):
        with pytest.raises(ServerConfigError, match=r"job_lease_seconds must be a number from 5\.0 to 3600\.0"):
            _config(tmp_path, {"database_url": db, "job_lease_seconds": bad})
    with pytest.raises(ServerConfigError, match="job_lease_seconds applies to the job queue in PostgreSQL only"):
        _config(tmp_path, {"job_lease_seconds": 30})


def test_a_queue_made_before_leases_renewed_gets_the_column_and_its_jobs_run(url: str, opened: list[Any]):
    with psycopg.connect(url) as conn:   # the jobs table as the previous version created it, one job waiting
        conn.execute("CREATE TABLE jobs (id bigserial PRIMARY KEY, dedupe text NOT NULL UNIQUE, handler text NOT "
                     "NULL, event text NOT NULL, state text NOT NULL DEFAULT 'pending', attempts integer NOT NULL "
                     "DEFAULT 0, not_before double precision NOT NULL DEFAULT 0, reason text, owner text, "
                     "created double precision NOT NULL, updated double precision NOT NULL)")
        conn.execute("INSERT INTO jobs (dedupe, handler, event, created, updated) VALUES ('h|k', 'h', %s, 0, 0)",
                     (json.dumps(EVENT.to_stored()),))
    q = _queue(url, opened, "runtime-a", LEASE_S)
    job = q.claim(0.1)
    assert job is not None and job.event == EVENT and len(job.lease) == 16
    q.done(job)
    assert q.counts() == {"done": 1}
