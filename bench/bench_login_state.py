"""The dashboard's login state on its two stores: memory (embedded) and PostgreSQL (``database_url``).

    python bench/bench_login_state.py [--calls 2000] [--sessions 50]

Why: every dashboard request (each page, thumbnail and video segment) looks its session up, which on
PostgreSQL is a database round trip plus opening the sealed record; a login adds a limiter claim (one
transaction under an advisory lock) and a session row. PostgreSQL is started for the run as the tests start
it (tests/postgres_server.py), fsync on, on loopback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

from cryospy.common.database import open_pool
from cryospy.web.login_limiter import LoginLimiter
from cryospy.web.pg_login_state import PostgresLoginLimiter, PostgresSessions
from cryospy.web.sessions import MemorySessions
from tests.postgres_server import start_for_bench, stop_for_bench


def _ms(started: float, calls: int) -> str:
    return f"{(time.perf_counter() - started) / calls * 1000:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    server = start_for_bench(fsync=True)
    key = os.urandom(32)
    try:
        pool = open_pool(server.fresh_url(), max_size=4)
        backends = {"memory": (MemorySessions(), LoginLimiter(per_client=10**9, global_free=10**9)),
                    "postgres": (PostgresSessions(pool, lambda: key),
                                 PostgresLoginLimiter(pool, lambda: key, per_client=10**9, global_free=10**9))}
        now = time.time()
        for name, (sessions, limiter) in backends.items():
            started = time.perf_counter()
            tokens = [sessions.start(f"account {i}", now + 3600, now)[0] for i in range(args.sessions)]
            start_ms = _ms(started, args.sessions)
            started = time.perf_counter()
            for i in range(args.calls):
                assert sessions.get(tokens[i % len(tokens)], now) is not None
            get_ms = _ms(started, args.calls)
            started = time.perf_counter()
            for i in range(args.calls // 10):
                limiter.succeeded(limiter.claim(f"10.0.{i // 250}.{i % 250}"))
            claim_ms = _ms(started, args.calls // 10)
            print(f"{name}: session lookup {get_ms} (mean of {args.calls}), new session {start_ms}, "
                  f"limiter claim + success {claim_ms} (mean of {args.calls // 10})")
        pool.close()
    finally:
        stop_for_bench(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
