"""The clip index on its two backends, same run, same work: the embedded TinyDB store and PostgreSQL.

    python bench/bench_index_backends.py [--clips 400] [--history 2000] [--devices 4] [--per-day 200]

Why: issue 18 asks PostgreSQL ingest to reach at least 0.8 of the embedded store's on one runtime. This
measures the index's share of ingest, which is the part the backend changes (MinIO, ffmpeg and the sealed
clip's checks are the same on both).

What runs, per backend, on a fresh store:

* **history**: ``--history`` clips over ``--devices`` cameras, ``--per-day`` per camera per UTC day, indexed
  through the store's own ``upsert_clip`` (not timed);
* **ingest** (timed): ``--clips`` new clips, each doing what the ingest path and the jobs right after it ask
  of the index: ``find_sequence`` (the chain check's predecessor), ``upsert_clip`` (a 1 MB clip, 10
  fragments), ``update_clip`` (the chain verdict), ``usage`` (the quota check) and the first step of
  ``oldest_unprotected`` (retention). Reported as clips/s and index calls/s;
* **queries** (timed, best of 5): one camera's full day (``clips_for_day``, what a day page renders), the
  newest 50 clips of all cameras (``query``), the newest 50 motion clips of one camera, the totals.

PostgreSQL is Debian's PostgreSQL 15, started for the run in a temporary directory as the tests start it
(tests/postgres_server.py), on loopback, with ``fsync=off`` (the TinyDB store does fsync each write: the
PostgreSQL figure is an upper bound for a database on the same disk with fsync on; ``--fsync`` turns it on).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

from bench_sealed import best_of

from cryospy.common.database import open_pool
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.query import ClipQuery
from cryospy.functions.index.records import ClipRecord, fragments_from
from cryospy.functions.index.store import TinyDBIndex
from tests.postgres_server import make_server, postgres_missing_message

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(device: str, n: int, per_day: int) -> ClipRecord:
    at = T0 + timedelta(days=n // per_day, seconds=(n % per_day) * (86400 // per_day))
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return ClipRecord(
        key=f"clips/_{device}/{at:%Y/%m/%d}/{at:%Y%m%dT%H%M%S}.000Z-{n}.cse", device_id=device,
        day=stamp[:10], captured_at=stamp, sequence=n, sealed_size=1_000_000, plain_size=999_000,
        header_hash=f"{n:064x}", prev_hash=f"{max(n - 1, 0):064x}", thumb_key=f"derived/thumbs/{n}.jpg.cse",
        thumb_size=9000, indexed_at=stamp, duration_s=10.0, width=1280, height=720, fps=15.0,
        codec="avc1.64001f", init_size=800,
        fragments=fragments_from([[800 + i * 99_000, 99_000, float(i), 1.0] for i in range(10)]),
        motion=n % 3 == 0, motion_score=0.4, agent={"agent_version": "bench"}, record_mode="motion")


def ingest_one(index: ClipIndex, rec: ClipRecord) -> int:
    """The index calls of one clip's ingest and the jobs after it; returns how many."""
    index.find_sequence(rec.device_id, rec.sequence - 1, rec.day, -1)
    index.upsert_clip(rec)
    index.update_clip(rec.device_id, rec.day, rec.key, chain="ok")
    index.usage(rec.device_id)
    next(iter(index.oldest_unprotected(rec.device_id)), None)
    return 5


def measure(name: str, index: ClipIndex, args: argparse.Namespace) -> dict[str, float]:
    devices = [f"camera {d}" for d in range(args.devices)]
    per_device = args.history // args.devices
    for n in range(per_device):
        for device in devices:
            index.upsert_clip(record(device, n, args.per_day))
    start, calls = time.perf_counter(), 0
    for i in range(args.clips):
        device = devices[i % len(devices)]
        calls += ingest_one(index, record(device, per_device + i // len(devices), args.per_day))
    elapsed = time.perf_counter() - start
    day = record(devices[0], 0, args.per_day).day
    newest = ClipQuery.parse({"limit": "50"})
    motion = ClipQuery.parse({"device": devices[0], "motion": "true", "limit": "50"})
    result = {
        "ingest clips/s": args.clips / elapsed,
        "index calls/s": calls / elapsed,
        "day page read (ms)": best_of(5, lambda: index.clips_for_day(devices[0], day)) * 1000,
        "newest 50, all cameras (ms)": best_of(5, lambda: index.query(newest)) * 1000,
        "newest 50 motion, 1 camera (ms)": best_of(5, lambda: index.query(motion)) * 1000,
        "totals (ms)": best_of(5, lambda: index.usage()) * 1000,
    }
    print(f"  {name}: done", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--history", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--per-day", type=int, default=200)
    parser.add_argument("--fsync", action="store_true", help="run PostgreSQL with fsync on")
    args = parser.parse_args()
    missing = postgres_missing_message()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    key = os.urandom(32)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        print("TinyDB (embedded) ...", file=sys.stderr)
        tiny = TinyDBIndex(Path(tmp) / "index", lambda: key)
        results["TinyDB"] = measure("TinyDB", tiny, args)
        tiny.close()
    print("PostgreSQL 15 ...", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    server = make_server(root, fsync=args.fsync).start()
    try:
        index = PostgresIndex(open_pool(server.fresh_url(), max_size=4), lambda: key)
        results["PostgreSQL"] = measure("PostgreSQL", index, args)
        index.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.history} clips of history over {args.devices} cameras ({args.per_day}/camera/day), "
          f"{args.clips} clips timed; PostgreSQL fsync {'on' if args.fsync else 'off'}\n")
    print(f"| {'':34} | {'TinyDB':>10} | {'PostgreSQL':>10} | {'PG / TinyDB':>11} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 13}|")
    for metric in results["TinyDB"]:
        a, b = results["TinyDB"][metric], results["PostgreSQL"][metric]
        print(f"| {metric:34} | {a:10.1f} | {b:10.1f} | {b / a:11.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
