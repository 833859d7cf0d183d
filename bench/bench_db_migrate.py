"""``cryospy db migrate`` at scale: N clips from the embedded store to PostgreSQL and back, verified.

    python bench/bench_db_migrate.py [--clips 10000] [--devices 4] [--per-day 500] [--dead 50] [--fsync]

The history is written straight into a fresh TinyDB index (10 fragments a clip, every 20th protected) and
SQLite queue (one done row per clip, ``--dead`` dead letters) through the import path, then
:func:`cryospy.infra.db_migrate.migrate` copies it to a fresh PostgreSQL schema and back into an empty
embedded store; each direction includes its verification (every record read back from both sides). PostgreSQL
is started for the run as the tests start it (tests/postgres_server.py), fsync off unless ``--fsync``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

from cryospy.common.database import open_pool
from cryospy.functions.devices.device_store import FileDeviceStore
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.records import ClipRecord, fragments_from
from cryospy.functions.index.store import TinyDBIndex
from cryospy.infra.db_migrate import Stores, migrate
from cryospy.infra.jobqueue import JobQueue, JobRow
from cryospy.infra.pg_jobqueue import PostgresJobQueue
from tests.postgres_server import make_server, postgres_missing_message

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def history(devices: int, clips: int, per_day: int) -> dict[tuple[str, str], list[ClipRecord]]:
    days: dict[tuple[str, str], list[ClipRecord]] = {}
    for n in range(clips):
        device, i = f"camera {n % devices}", n // devices
        at = T0 + timedelta(days=i // per_day, seconds=(i % per_day) * 60)
        stamp, day = at.strftime("%Y-%m-%dT%H:%M:%S.000Z"), at.date().isoformat()
        days.setdefault((device, day), []).append(ClipRecord(
            key=f"clips/{device}/{stamp}-{i}.cse", device_id=device, day=day, captured_at=stamp, sequence=i,
            sealed_size=1_000_000, plain_size=999_000, header_hash=f"{i:064x}", thumb_key=f"thumbs/{i}.cse",
            thumb_size=9000, protected=i % 20 == 0, indexed_at=stamp, duration_s=10.0, width=1280, height=720,
            fps=15.0, codec="avc1.64001f",
            fragments=fragments_from([[700 + k * 9000, 9000, k, 1.0] for k in range(10)]),
            motion=i % 3 == 0, live=(i * 10, i)))
    return days


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--per-day", type=int, default=500)
    parser.add_argument("--dead", type=int, default=50)
    parser.add_argument("--fsync", action="store_true")
    args = parser.parse_args()
    if postgres_missing_message():
        sys.exit(postgres_missing_message())
    key = os.urandom(32)
    tmp = Path(tempfile.mkdtemp(prefix="bench-migrate-"))
    server = make_server(Path(tempfile.mkdtemp(prefix="bench-pg-")), fsync=args.fsync).start()
    try:
        url = server.fresh_url()
        source = Stores(TinyDBIndex(tmp / "a" / "index", lambda: key), JobQueue(tmp / "a" / "jobs.sqlite"),
                        FileDeviceStore(tmp / "a" / "devices.json"), "TinyDB")
        for (device, day), records in history(args.devices, args.clips, args.per_day).items():
            source.index.import_day(device, day, records)
        source.queue.import_rows([JobRow(n + 1, f"on_clip|{n}", "on_clip", "{}", "dead" if n < args.dead else "done",
                                         1, 0.0, "bench" if n < args.dead else None, 1.0, 2.0)
                                  for n in range(args.clips)])
        database = Stores(PostgresIndex(open_pool(url, max_size=2), lambda: key),
                          PostgresJobQueue(open_pool(url, max_size=1), recover=False),
                          PostgresDeviceStore(open_pool(url, max_size=1), lambda: key), "PostgreSQL")
        there = migrate(source, database)
        back_store = Stores(TinyDBIndex(tmp / "b" / "index", lambda: key), JobQueue(tmp / "b" / "jobs.sqlite"),
                            FileDeviceStore(tmp / "b" / "devices.json"), "TinyDB again")
        back = migrate(database, back_store)
        for stores in (source, database, back_store):
            stores.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(server.root, ignore_errors=True)
    print(f"{there.clips} clips in {there.days} device-days, {there.jobs} queue rows ({there.dead_letters} dead)")
    print(f"embedded -> PostgreSQL (fsync {'on' if args.fsync else 'off'}), copy and verify: {there.seconds:.1f} s "
          f"({there.clips / there.seconds:.0f} clips/s)")
    print(f"PostgreSQL -> embedded, copy and verify: {back.seconds:.1f} s ({back.clips / back.seconds:.0f} clips/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
