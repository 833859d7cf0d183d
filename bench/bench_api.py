"""Upload-slot throughput and latency with many concurrent devices, against an empty route in the same run.

    python bench/bench_api.py [--devices 32] [--seconds 8]

Starts a real MinIO and the runtime (waitress) in its own process, enrols the devices, then has each device
hammer ``POST /v1/device/slots`` over its own keep-alive connection from this process (so the load generator
does not share the server's interpreter lock); the baseline is ``GET /v1/health`` on the same server with the
same concurrency. Prints a table with requests/s, p50 and p99, and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryospy.common.timefmt import utc_stamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer
from cryospy.infra.runtime import Runtime, RuntimeOptions
from tests.conftest import PASSPHRASE, new_deployment
from tests.support import FakeCamera


def _load(port: int, method: str, path: str, bodies, headers, seconds: float, latencies: list[float],
          errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        body = bodies(i) if bodies else None
        t0 = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - t0)
        if resp.status >= 300:
            errors.append(f"{resp.status}")
        i += 1
    conn.close()


def run(port: int, method: str, path: str, clients: list[tuple], seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=_load, args=(port, method, path, bodies, headers, seconds, latencies, errors))
               for bodies, headers in clients]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"rps": len(lat) / elapsed, "p50": statistics.median(lat) * 1000,
            "p99": lat[int(len(lat) * 0.99) - 1] * 1000, "n": len(lat), "errors": len(errors)}


def _serve(dep, ready, stop) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime(dep, RuntimeOptions(reconcile_seconds=3600))
    rt.unlock(PASSPHRASE)
    rt.start()
    ready.set()
    stop.wait()
    rt.stop()


@contextmanager
def runtime_process(dep) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A real MinIO, and the runtime serving ``dep`` in its own process (so the load generator here does not
    share the server's interpreter lock)."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    with MinioServer(dep, binary=ensure_minio()):
        server = ctx.Process(target=_serve, args=(dep, ready, stop))
        server.start()
        try:
            if not ready.wait(60):
                raise SystemExit("the runtime did not start")
            yield
        finally:
            stop.set()
            server.join(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    dep = new_deployment(Path(tempfile.mkdtemp(prefix="cryospy-bench-")) / "d")
    with runtime_process(dep):
        clients_slot, clients_health = [], []
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for n in range(args.devices):
            cam = FakeCamera(dep, f"bench-{n}", Path(tempfile.mkdtemp()))
            auth = {"Authorization": cam.client._auth["Authorization"], "Content-Type": "application/json"}

            def bodies(i: int, n: int = n) -> bytes:
                stamp = utc_stamp(t0 + timedelta(seconds=i))
                return json.dumps({"size": 4_000_000, "sha256": hashlib.sha256(f"{n}-{i}".encode()).hexdigest(),
                                   "captured_at": stamp, "sequence": i}).encode()

            clients_slot.append((bodies, auth))
            clients_health.append((None, {}))
        port = dep.runtime_port
        run(port, "GET", "/v1/health", clients_health[:4], 1.0)        # warm up
        empty = run(port, "GET", "/v1/health", clients_health, args.seconds)
        slots = run(port, "POST", "/v1/device/slots", clients_slot, args.seconds)
    print(f"\n{args.devices} concurrent clients, {args.seconds:.0f} s each, waitress 8 threads, "
          "server and load generator in separate processes on 2 cores\n")
    print("| route | requests/s | p50 ms | p99 ms | requests | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in (("GET /v1/health (empty baseline)", empty), ("POST /v1/device/slots", slots)):
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['n']} | {r['errors']} |")
    print(f"\nslot throughput / empty route = {slots['rps'] / empty['rps']:.2f} (goal >= 0.50); "
          f"slot p99 = {slots['p99']:.1f} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
