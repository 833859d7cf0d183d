"""What only the PostgreSQL index has to show beyond the conformance suite: several processes sharing it hear
each other's changes, retention's walk reads no protected clip however long the history, and the clip query
without a time range counts from the running totals."""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.functions.index import postgres as pg
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.query import ClipQuery
from tests.pg_plans import PlanRecorder
from tests.support import wait_for
from tests.unit.test_index_conformance import DAY1, DAY2, clip


@pytest.fixture
def two_runtimes(postgres: Any) -> Any:
    """Two indexes on one database, as two runtimes have (each its own pool and listener)."""
    url, key = postgres.fresh_url(), os.urandom(32)
    indexes = [PostgresIndex(open_pool(url, max_size=4), lambda: key) for _ in range(2)]
    yield indexes
    for index in indexes:
        index.close()


def test_another_runtimes_write_reaches_this_ones_listeners(two_runtimes: list[PostgresIndex]) -> None:
    writer, reader = two_runtimes
    heard: list[tuple[str, str]] = []
    own: list[tuple[str, str]] = []
    reader.add_listener(lambda device, day: heard.append((device, day)))
    writer.add_listener(lambda device, day: own.append((device, day)))
    a = clip("back yard", DAY1, "10:00:00", 1)
    writer.upsert_clip(a)
    wait_for(lambda: heard, what="the other runtime's change")
    assert heard == [("back yard", DAY1)]
    writer.update_clip("back yard", DAY1, a.key, protected=True)
    writer.remove_clip("back yard", DAY1, a.key)
    wait_for(lambda: len(heard) == 3, what="two more changes")
    assert own == [("back yard", DAY1)] * 3          # the writer hears its own once each, not again by NOTIFY


def test_the_retention_walk_reads_no_protected_clip(two_runtimes: list[PostgresIndex],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    index = two_runtimes[0]
    for n in range(300):    # a long history of evidence, then one ordinary clip
        index.upsert_clip(clip("cam", DAY1, f"{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}", n, protected=True))
    newest = clip("cam", DAY2, "00:00:00", 300)
    index.upsert_clip(newest)
    opened = []
    real_open = pg.Sealer.open
    monkeypatch.setattr(pg.Sealer, "open", lambda self, blob, *aad: opened.append(aad) or real_open(self, blob, *aad))
    assert next(index.oldest_unprotected("cam")).key == newest.key
    assert len(opened) == 1
    assert next(index.oldest_unprotected()).key == newest.key
    assert len(opened) == 2


def _query_reads(postgres: Any, history_days: int) -> list[tuple[int, int]]:
    """(rows read, matched) of the clip query's first two pages, without a time range, over ``history_days``
    days of 3 clips for each of 2 cameras."""
    key, recorder = os.urandom(32), PlanRecorder("index_clips")
    url = postgres.fresh_url()
    index = PostgresIndex(recorder.pool(url, extra="-c enable_seqscan=off"), lambda: key)   # plan as at 1 M
    try:
        for camera in ("cam 1", "cam 2"):
            for back in range(history_days):
                day = (date(2026, 3, 1) - timedelta(days=back)).isoformat()
                index.import_day(camera, day, [clip(camera, day, f"1{h}:00:00", 3 * back + h) for h in range(3)])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE index_clips")
        found = []
        params = {"limit": "4"}
        for _ in range(2):
            recorder.take()
            page = index.query(ClipQuery.parse(params))
            found.append((recorder.take().rows, page.matched))
            params = {"limit": "4", "cursor": page.next_cursor or ""}
        return found
    finally:
        index.close()


def test_the_clip_query_without_a_time_range_counts_from_the_totals(postgres: Any) -> None:
    """Its ``matched`` figure comes from the running totals less the pages already seen: the first pages read
    as many rows with 60 days of history as with 15 (bench/bench_million.py: 1 M rows read before)."""
    short, long = _query_reads(postgres, 15), _query_reads(postgres, 60)   # both beyond one read batch (64)
    assert [matched for _, matched in short] == [90, 86] and [matched for _, matched in long] == [360, 356]
    # No more (the planner may read a small table more eagerly than a large one, never the other way here).
    assert all(a <= b for (a, _), (b, _) in zip(long, short, strict=True))
