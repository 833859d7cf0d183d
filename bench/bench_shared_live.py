"""What sharing the live view's state through PostgreSQL costs, and how soon a viewer on one runtime reaches an
agent's long-poll held by another.

    python bench/bench_shared_live.py [--wakes 40] [--parts 200]

Two :class:`~cryospy.functions.live.pg_hub.PostgresLiveHub` on separate pools stand in for runtimes A and B
(as tests/unit/test_live_hubs.py does). It measures:

* **wake-up**: a poll held on A (``wait_for_change``, its periodic re-read turned off), then a viewer's first
  ask on B (``viewer_seen``): the time from that ask to A's answer, which travels by ``NOTIFY``;
* **parts**: ``add_part`` alternately on A and B (each one transaction that numbers the part and trims the
  window), then ``parts()`` on B (what each playlist and status ask reads), per call; and the same on the
  in-memory :class:`~cryospy.functions.live.hub.LiveHub` for comparison.

PostgreSQL is started for the run as the tests start it (tests/postgres_server.py), fsync on, on loopback.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

from cryospy.common.database import open_pool
from cryospy.functions.live.hub import LiveHub, LiveState, ParsedPart
from cryospy.functions.live.pg_hub import PostgresLiveHub
from tests.postgres_server import start_for_bench, stop_for_bench

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def part(n: int) -> ParsedPart:
    return ParsedPart(key=f"live/tok/part-{n}", captured_at=T0 + timedelta(seconds=n), duration_s=1.0,
                      start_s=float(n), init_size=800, init_digest=hashlib.sha256(b"init").digest(),
                      fragment_offset=800, fragment_size=40_000, sealed_size=41_500, codec="avc1.4d400c")


def wakes(a: PostgresLiveHub, b: PostgresLiveHub, count: int) -> list[float]:
    took = []
    for i in range(count):
        camera, answered = f"camera {i}", []

        def held(camera: str = camera, answered: list = answered) -> None:
            answered.append((a.wait_for_change(camera, False, 30), time.perf_counter()))
        poll = threading.Thread(target=held)
        poll.start()
        while a._waiters == 0:       # held (then give it a moment to be waiting, not reading)
            time.sleep(0.001)
        time.sleep(0.05)
        asked = time.perf_counter()
        b.viewer_seen(camera)
        poll.join()
        assert answered[0][0] == (True, True)
        took.append(answered[0][1] - asked)
    return took


def parts(name: str, adders: list[LiveState], reader: LiveState, count: int) -> None:
    started = time.perf_counter()
    for n in range(count):
        adders[n % len(adders)].add_part("camera", part(n))
    added = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for _ in range(count):
        listed = reader.parts("camera")
    read = (time.perf_counter() - started) / count
    assert [p.media_sequence for p in listed] == list(range(count - 6, count))
    print(f"{name}: add_part {added * 1000:.2f} ms, parts() {read * 1000:.3f} ms per call (of {count})")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--wakes", type=int, default=40)
    args.add_argument("--parts", type=int, default=200)
    opts = args.parse_args()
    server = start_for_bench(fsync=True)
    key = os.urandom(32)
    hubs = [PostgresLiveHub(open_pool(server.url, max_size=4), lambda: key, grace_s=0.05, recheck_s=60)
            for _ in range(2)]
    try:
        took = sorted(wakes(hubs[0], hubs[1], opts.wakes))
        print(f"viewer on B -> poll held on A answered: median {statistics.median(took) * 1000:.1f} ms, "
              f"p90 {took[int(len(took) * 0.9)] * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms (of {len(took)})")
        parts("postgres, parts added on A and B, read on B", list(hubs), hubs[1], opts.parts)
        memory = LiveHub()
        parts("memory (one runtime)", [memory], memory, opts.parts)
    finally:
        for hub in hubs:
            hub.close()
        stop_for_bench(server)


if __name__ == "__main__":
    main()
