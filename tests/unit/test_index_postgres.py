"""What only the PostgreSQL index has to show beyond the conformance suite: several processes sharing it hear
each other's changes, and retention's walk reads no protected clip however long the history."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cryospy.common.database import open_pool
from cryospy.functions.index import postgres as pg
from cryospy.functions.index.postgres import PostgresIndex
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
