"""What one camera's heartbeats cost every other camera: another camera's API latency during a burst.

    python bench/bench_heartbeat.py [--devices 32] [--heartbeats 64] [--rounds 5]

Starts a real MinIO and the runtime in its own process and enrols ``--devices`` cameras (the registry's size).
One camera then sends ``--heartbeats`` heartbeats over 8 keep-alive connections while another camera polls
``GET /v1/device/settings`` over its own; the quiet camera's median and p90 are compared with the same poll
while nobody sends heartbeats. Repeated ``--rounds`` times; the median of each statistic is printed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import runtime_process

from tests.conftest import new_deployment
from tests.support import FakeCamera

BEAT = json.dumps({"agent_version": "bench", "spool_depth": 0, "source_state": "ok", "uptime_s": 1.0}).encode()


def _poll(port: int, auth: dict[str, str], until: threading.Event, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not until.is_set():
        t0 = time.perf_counter()
        conn.request("GET", "/v1/device/settings", headers=auth)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        out.append(time.perf_counter() - t0)
    conn.close()


def _beats(port: int, auth: dict[str, str], count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        conn.request("POST", "/v1/device/heartbeat", body=BEAT, headers={**auth, "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
    conn.close()


def _round(port: int, quiet: dict[str, str], chatty: dict[str, str], heartbeats: int) -> tuple[list[float], ...]:
    idle: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(port, quiet, stop, idle))
    poller.start()
    time.sleep(1.0)
    stop.set()
    poller.join()
    busy: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(port, quiet, stop, busy))
    poller.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _beats(port, chatty, heartbeats // 8), range(8)))
    stop.set()
    poller.join()
    return idle, busy


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=32)
    parser.add_argument("--heartbeats", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dep = new_deployment(Path(tempfile.mkdtemp(prefix="cryospy-bench-")) / "d")
    with runtime_process(dep):
        cams = [FakeCamera(dep, f"hb-{n}", Path(tempfile.mkdtemp())) for n in range(args.devices)]
        quiet, chatty = ({"Authorization": c.client._auth["Authorization"]} for c in cams[:2])
        results = [_round(dep.runtime_port, quiet, chatty, args.heartbeats) for _ in range(args.rounds)]
    idle = [_stats(r[0]) for r in results]
    busy = [_stats(r[1]) for r in results]
    print(f"\n{args.devices} devices enrolled; one sends {args.heartbeats} heartbeats on 8 connections while another "
          f"polls its settings; median of {args.rounds} rounds; 2 cores\n")
    print("| quiet camera's GET /v1/device/settings | p50 ms | p90 ms |")
    print("|---|---:|---:|")
    for name, rows in (("nobody sends heartbeats", idle), (f"during {args.heartbeats} heartbeats", busy)):
        print(f"| {name} | {statistics.median(r[0] for r in rows):.1f} | {statistics.median(r[1] for r in rows):.1f} |")


if __name__ == "__main__":
    main()
