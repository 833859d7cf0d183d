"""The connection pool every PostgreSQL store shares (cryospy/common/database.py), on a real PostgreSQL: a
connection lent by ``standalone`` runs each statement as its own transaction without BEGIN/COMMIT round trips,
and no connection goes back to the pool in autocommit mode, so ``with pool.connection()`` stays one
transaction for the stores' multi-statement writes."""

from __future__ import annotations

import psycopg
import pytest

from cryospy.common.database import open_pool, standalone


@pytest.fixture
def url(postgres) -> str:  # type: ignore[no-untyped-def]
    url = postgres.fresh_url()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (n integer PRIMARY KEY)")
    return url


def _seen(url: str) -> list[int]:
    with psycopg.connect(url) as other:
        return [r[0] for r in other.execute("SELECT n FROM t ORDER BY n")]


def test_standalone_statements_commit_one_by_one_without_begin(url: str) -> None:
    pool = open_pool(url, max_size=1)
    try:
        with standalone(pool) as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE   # no BEGIN was sent
            assert _seen(url) == [1]   # committed before the block ends
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("INSERT INTO t VALUES (2)")   # a failed statement leaves no aborted transaction behind
        assert _seen(url) == [1, 2]
    finally:
        pool.close()


def test_a_connection_comes_back_to_the_pool_transactional(url: str) -> None:
    pool = open_pool(url, max_size=1)   # one connection: the next checkout is the same one
    try:
        with standalone(pool) as conn:
            conn.execute("SELECT 1")
        with pool.connection() as conn:
            conn.autocommit = True   # as the index's LISTEN loop does
        with pool.connection() as conn:
            assert conn.autocommit is False
            conn.execute("INSERT INTO t VALUES (3)")
            assert _seen(url) == []   # still inside the one transaction of the block
            conn.execute("INSERT INTO t VALUES (4)")
        assert _seen(url) == [3, 4]
        with pytest.raises(RuntimeError), pool.connection() as conn:
            conn.execute("INSERT INTO t VALUES (5)")
            raise RuntimeError("a write that fails half-way")
        assert _seen(url) == [3, 4]   # rolled back as a whole
    finally:
        pool.close()
