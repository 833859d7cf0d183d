"""Real-time events: motion onset -> MQTT message and -> webhook delivery, and events/s through the event path.

    python bench/bench_events.py [--events 100] [--throughput 10000] [--rounds 5]

Real parts: MinIO, the runtime (waitress) in its own process, Debian's mosquitto with its own config
(tests/mqtt_broker.py), a webhook receiver in this process. Measured:

* latency: the agent's own EventReporter (edge_agent/live_events.py) is told of a moving frame
  (``moving()``; ``motion_min_seconds`` 0 so the onset is reported at once) and its loop posts the event to
  /v1/device/events; the clock stops when a subscriber on the broker gets the ``events`` message, and when
  the webhook receiver gets the signed POST. One event at a time, ``--events`` of them.
* throughput: ``--throughput`` events per round posted in batches of 100 over one keep-alive connection; the
  round ends when the subscriber has every ``events`` message (each event also changes a retained state
  topic, so the runtime publishes two messages per event). The runtime's RSS after each round shows whether
  memory grows. Baseline, same run, same broker and subscriber: a bare paho loop publishing as many messages.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

from cryospy.common.timefmt import utc_now

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho

from cryospy.cli.devices import create_device
from cryospy.edge_agent.api_client import ApiClient
from cryospy.edge_agent.config import load_config
from cryospy.edge_agent.live_events import EventReporter
from cryospy.functions.channels import parse_channels
from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.infra.server_config import ServerConfig
from tests.conftest import PASSPHRASE, new_deployment
from tests.integration.test_home_events import Receiver
from tests.mqtt_broker import PASSWORD, USER, Broker, Subscriber, make_broker

CAMERA = "bench-cam"


def _serve(dep: Any, channels: dict[str, Any], ready: Any, stop: Any) -> None:
    config = ServerConfig(channels=parse_channels(channels, smtp_ready=False))
    rt = Runtime(dep, RuntimeOptions(reconcile_seconds=3600), config)
    rt.unlock(PASSPHRASE)
    rt.start()
    ready.set()
    stop.wait()
    rt.stop()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class FakeMonotonic:
    """The reporter's clock, moved 3 s per event so that each moving frame opens a new motion run."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def latency(config_path: Path, broker: Broker, receiver: Receiver, n: int) -> tuple[list[float], list[float]]:
    sub = Subscriber(broker, f"bench/{CAMERA}/events")
    clock, stop = FakeMonotonic(), threading.Event()
    reporter = EventReporter(ApiClient(load_config(config_path)), stop, source_state=lambda: "ok",
                             motion_state=lambda: "ok", min_seconds=lambda: 0.0, monotonic=clock)
    loop = threading.Thread(target=reporter.run, daemon=True)
    loop.start()
    mqtt_ms, hook_ms = [], []
    try:
        for i in range(n):
            clock.t += 3.0
            t0, t0_mono = time.time(), time.monotonic()     # the receiver stamps arrivals with monotonic time
            reporter.moving(0.3)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                starts = [w for topic, p, _, w in sub.walls if '"motion_start"' in p]
                hooks = [t for _, body, t in receiver.requests if b'"motion_start"' in body]
                if len(starts) > i and len(hooks) > i:
                    mqtt_ms.append((starts[i] - t0) * 1000)
                    hook_ms.append((hooks[i] - t0_mono) * 1000)
                    break
                time.sleep(0.001)
            else:
                raise RuntimeError(f"event {i} did not arrive within 10 s")
            time.sleep(0.02)
    finally:
        stop.set()
        loop.join(10)
        sub.close()
    return mqtt_ms, hook_ms


def throughput(port: int, auth: str, broker: Broker, n: int) -> float:
    sub = Subscriber(broker, f"bench/{CAMERA}/events")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    now = utc_now()
    batch = json.dumps({"events": [{"kind": "camera_online" if i % 2 else "camera_offline", "at": now,
                                    "detail": "bench"} for i in range(100)]})
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    t0 = time.perf_counter()
    for _ in range(n // 100):
        conn.request("POST", "/v1/device/events", body=batch, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
    rate = received_rate(sub, n, t0, "the event path")
    conn.close()
    return rate


def received_rate(sub: Subscriber, n: int, t0: float, what: str) -> float:
    """Messages per second from ``t0`` until the subscriber has ``n``; closes it."""
    deadline = time.monotonic() + 120
    while len(sub.messages) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    got = len(sub.messages)
    sub.close()
    if got < n:
        raise RuntimeError(f"{what} lost messages: {got} of {n} reached the subscriber")
    return n / elapsed


def bare_paho(broker: Broker, n: int) -> float:
    sub = Subscriber(broker, "bench/bare")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.username_pw_set(USER, PASSWORD)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port, 30)
    client.loop_start()
    payload = json.dumps({"camera": CAMERA, "kind": "camera_online", "at": "2026-01-01T00:00:00.000Z"})
    t0 = time.perf_counter()
    for _ in range(n):
        client.publish("bench/bare", payload, qos=0)
    rate = received_rate(sub, n, t0, "the bare loop")
    client.disconnect()
    client.loop_stop()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--throughput", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-events-"))
    dep = new_deployment(root / "deployment")
    minio = MinioServer(dep, binary=ensure_minio()).start()
    broker = make_broker(root / "mosquitto").start()
    receiver = Receiver(status=204)
    channels = {"mqtt": {**broker.settings(topic_prefix="bench", node_id="bench"), "queue_size": 100_000},
                "webhook": {"enabled": True, "url": receiver.url, "secret": "bench webhook secret",
                            "kinds": ["motion_start"]}}
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    server = ctx.Process(target=_serve, args=(dep, channels, ready, stop))
    server.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the runtime did not start")
        config_path = root / "bench-cam.json"
        create_device(dep, CAMERA, config_path, {"camera_device": "synthetic:160x96"}, agent_generates_key=True)
        cfg = load_config(config_path)
        auth = "Basic " + b64encode(f"{cfg.client_id}:{cfg.client_secret}".encode()).decode()

        mqtt_ms, hook_ms = latency(config_path, broker, receiver, args.events)
        rates, rss = [], [rss_mib(server.pid)]
        for _ in range(args.rounds):
            rates.append(throughput(dep.runtime_port, auth, broker, args.throughput))
            rss.append(rss_mib(server.pid))
        base = bare_paho(broker, args.throughput)
    finally:
        stop.set()
        server.join(60)
        receiver.close()
        broker.stop()
        minio.stop()

    print(f"\nReal-time events, {args.events} motion onsets one at a time (loopback, 2 shared cores)\n")
    print("| path | p50 | p95 | max |")
    print("|---|---|---|---|")
    for name, values in (("moving frame -> MQTT events message", mqtt_ms),
                         ("moving frame -> signed webhook received", hook_ms)):
        print(f"| {name} | {statistics.median(values):.1f} ms | {pct(values, 95):.1f} ms | {max(values):.1f} ms |")
    print(f"\nThroughput, {args.rounds} rounds of {args.throughput} events (HTTP batches of 100 -> hub -> MQTT)\n")
    print("| what | events/s | runtime RSS after |")
    print("|---|---|---|")
    print(f"| before the rounds | | {rss[0]:.1f} MiB |")
    for i, (rate, mib) in enumerate(zip(rates, rss[1:], strict=True), 1):
        print(f"| round {i} | {rate:,.0f} | {mib:.1f} MiB |")
    print(f"| baseline: bare paho publish loop, same broker and subscriber | {base:,.0f} | |")
    growth = f"RSS growth from round 2 to round {args.rounds}: {rss[-1] - rss[2]:+.1f} MiB; " if args.rounds > 2 else ""
    print(f"\n{growth}event path at {statistics.median(rates) / base:.0%} of the bare publish loop")


if __name__ == "__main__":
    main()
