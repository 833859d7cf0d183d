"""What sharing device contact through PostgreSQL costs a device request, with and without the write throttle.

    python bench/bench_shared_contacts.py [--calls 2000] [--devices 20]

Every authenticated device request is contact (channels/presence.py) and most record last-seen
(DeviceRegistry.touch). This replays ``--calls`` requests' worth of both over ``--devices`` cameras, as fast as
one thread can, on:

* embedded: the runtime's own memory (DeviceHealth, Presence), the default;
* postgres: PostgresDeviceHealth (writes at most every 5 s per device) and SharedPresence (contact written by
  the presence check, at most once per check per camera), with one presence check every 1,000 calls;
* postgres, unthrottled: PostgresDeviceHealth with ``write_every_s=0`` (a write per request), to show what
  the throttle saves.

It prints the cost per request of touch + contact (mean and median: the mean carries the few requests that
write), how many health writes were made, and what a presence check (write the noted contacts, read the
table) takes. PostgreSQL is
started for the run as the tests start it (tests/postgres_server.py), fsync on, on loopback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

from cryospy.common.database import open_pool
from cryospy.common.timefmt import utc_now
from cryospy.functions.channels.presence import Presence
from cryospy.functions.channels.shared_presence import PostgresPresenceStore, SharedPresence
from cryospy.functions.devices.health import DeviceHealth, HealthStore
from cryospy.functions.devices.pg_health import PostgresDeviceHealth
from tests.postgres_server import start_for_bench, stop_for_bench


def run(name: str, health: HealthStore, presence: Presence, calls: int, devices: int) -> None:
    took, checks = [], 0.0
    for i in range(calls):
        camera = f"camera {i % devices}"
        started = time.perf_counter()
        presence.seen(camera)
        health.record(camera, utc_now(), None)
        took.append(time.perf_counter() - started)
        if i % 1000 == 999:
            started = time.perf_counter()
            presence.check()
            checks += time.perf_counter() - started
    writes = getattr(health, "writes", 0)
    print(f"{name}: touch + contact per request {statistics.mean(took) * 1000:.3f} ms mean, "
          f"{statistics.median(took) * 1000:.4f} ms median (of {calls}); {writes} health writes; "
          f"presence check {checks / max(1, calls // 1000) * 1000:.1f} ms each")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-contacts-"))
    server = start_for_bench(fsync=True)
    key = os.urandom(32)
    try:
        run("embedded", DeviceHealth(tmp / "health.json"), Presence(), args.calls, args.devices)
        for name, every in (("postgres", 5.0), ("postgres, unthrottled", 0.0)):
            url = server.fresh_url()
            health = PostgresDeviceHealth(open_pool(url, max_size=2), lambda: key, write_every_s=every)
            presence = SharedPresence(PostgresPresenceStore(open_pool(url, max_size=2), lambda: key))
            run(name, health, presence, args.calls, args.devices)
            health.close()
            presence.close()
    finally:
        stop_for_bench(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
