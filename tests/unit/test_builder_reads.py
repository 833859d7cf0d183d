"""The dashboard's incremental rebuild reads as many rows with 60 days of history as with 8 (issue 18: "dashboard
incremental rebuild at 1 M clips ≤ 1.5x its cost at 1 k"; bench/bench_million.py measures the times).

Rows read, not a time: the statements are the index's own, their plans reported by the server's auto_explain
(tests/pg_plans.py). Functional tier: a real PostgreSQL (tests/postgres_server.py).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.web.builder import SiteBuilder, day_page
from cryospy.web.site_store import SiteStore
from tests.pg_plans import PlanRecorder, Reads
from tests.unit.test_index_conformance import clip

CAMERAS = ("cam 1", "cam+2")
TODAY = date(2026, 3, 1)


def one_new_clip(postgres: Any, root: Path, history_days: int) -> tuple[Reads, SiteStore, PostgresIndex]:
    """A runtime's index and builder over ``history_days`` days of 2 clips a camera, rendered at start; then
    one new clip of today: what the flush after it read."""
    key = os.urandom(32)
    recorder = PlanRecorder("index_clips")
    # A table this small is cheaper to scan than to probe, so the planner would scan it; with 1 M clips it
    # probes the indexes (bench/bench_million.py shows the plans): plan as for a large table.
    url = postgres.fresh_url()
    index = PostgresIndex(recorder.pool(url, extra="-c enable_seqscan=off"), lambda: key)
    for camera in CAMERAS:
        sequence = 0
        for back in range(history_days, -1, -1):
            day = (TODAY - timedelta(days=back)).isoformat()
            index.import_day(camera, day, [clip(camera, day, "10:00:00", sequence), clip(camera, day, "11:00:00",
                                                                                         sequence + 1)])
            sequence += 2
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE index_clips")      # as autovacuum leaves a table after many inserts
    registry = DeviceRegistry(root / "devices.json")
    for camera in CAMERAS:
        registry.create(camera, signing_key="test-signing-key", settings={})
    store = SiteStore(root / "site", lambda: key)
    builder = SiteBuilder(index, registry, store, clock=lambda: datetime(2026, 3, 1, 20, tzinfo=UTC))
    builder.rebuild_all()                     # what the runtime does at start
    new = clip(CAMERAS[0], TODAY.isoformat(), "12:00:00", 2 * history_days + 2)
    index.upsert_clip(new)
    builder.on_index_change(new.device_id, new.day)
    recorder.take()
    assert builder.flush() == 1
    reads = recorder.take()
    page = store.get(day_page(new.device_id, new.day))
    assert page is not None and new.key in page
    return reads, store, index


def test_the_rebuild_after_a_clip_reads_no_more_rows_with_a_longer_history(postgres: Any, tmp_path: Path) -> None:
    short, _, short_index = one_new_clip(postgres, tmp_path / "short", history_days=8)
    long, store, long_index = one_new_clip(postgres, tmp_path / "long", history_days=60)
    try:
        assert long.seq_scans == short.seq_scans == 0
        assert long.statements == short.statements > 0
        assert long.rows == short.rows > 0      # the day's clips, its neighbour, each camera's newest 7 days
        overview = store.get("index") or ""
        newest = [(TODAY - timedelta(days=back)).isoformat() for back in range(7)]
        assert all(day_page(CAMERAS[1], day) in overview for day in newest)
        assert day_page(CAMERAS[1], (TODAY - timedelta(days=7)).isoformat()) not in overview
        yesterday = store.get(day_page(CAMERAS[0], (TODAY - timedelta(days=1)).isoformat())) or ""
        assert day_page(CAMERAS[0], (TODAY - timedelta(days=2)).isoformat()) in yesterday   # its links
        assert day_page(CAMERAS[0], TODAY.isoformat()) in yesterday
    finally:
        short_index.close()
        long_index.close()
