"""Device authentication on the registry's two stores: the embedded file (in memory) and PostgreSQL.

    python bench/bench_registry_backends.py [--calls 2000] [--devices 20]

Why: every device request authenticates, and on PostgreSQL that is a database round trip plus opening the
sealed record, where the embedded file answers from memory. PostgreSQL is started for the run as the tests
start it (tests/postgres_server.py), fsync on, on loopback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

from cryospy.common.database import open_pool
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.devices.registry import DeviceRegistry
from tests.postgres_server import start_for_bench, stop_for_bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    server = start_for_bench(fsync=True)
    key = os.urandom(32)
    try:
        stores = {"file": DeviceRegistry(tmp / "file.json"),
                  "postgres": DeviceRegistry(tmp / "pg.json", store=PostgresDeviceStore(
                      open_pool(server.fresh_url()), lambda: key))}
        for name, registry in stores.items():
            secrets = [registry.create(f"camera {i}", None, {})[1] for i in range(args.devices)]
            started = time.perf_counter()
            for i in range(args.calls):
                registry.authenticate(f"camera {i % args.devices}", secrets[i % args.devices])
            print(f"{name}: {(time.perf_counter() - started) / args.calls * 1000:.3f} ms per authenticate "
                  f"(mean of {args.calls})")
            registry.close()
    finally:
        stop_for_bench(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
