"""What TLS costs a camera: a new connection's handshake on the API, and a whole clip upload, TLS against plain.

    python bench/bench_tls.py [--requests 40]

Two deployments on 127.0.0.1, one set up with ``tls=False`` (the baseline) and one as `cryospy setup` makes it
(TLS with its own CA); each serves from a real MinIO and the runtime in its own process. One enrolled camera
(the agent's own ApiClient, which opens a new connection per request as urllib does) times ``GET /health`` and
a whole upload: the presigned slot from the API, the PUT of a small sealed clip to MinIO and the confirmation
(three connections, so three handshakes under TLS). Medians in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_api import runtime_process

from cryospy.cli.setup_cmd import setup
from cryospy.infra.minio_server import free_port
from tests.conftest import FAST_SCRYPT_N, PASSPHRASE
from tests.support import FakeCamera


def _median_ms(fn: Callable[[], object], count: int) -> float:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(tls: bool, count: int) -> tuple[float, float]:
    host = "127.0.0.1"
    dep = setup(Path(tempfile.mkdtemp(prefix="cryospy-bench-")) / "d", PASSPHRASE, scrypt_n=FAST_SCRYPT_N, tls=tls,
                host=host, runtime_port=free_port(host), minio_port=free_port(host), minio_console_port=free_port(host))
    with runtime_process(dep):
        cam = FakeCamera(dep, "bench-cam", Path(tempfile.mkdtemp()))
        cam.upload()   # warm up (first slot, first PUT)
        health = _median_ms(lambda: cam.client.call("GET", "/health"), count)
        upload = _median_ms(cam.upload, count)
    return health, upload


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40, help="per measurement (slots: at most 120 a minute)")
    args = parser.parse_args()
    plain = measure(False, args.requests)
    tls = measure(True, args.requests)
    print(f"\nmedian of {args.requests}; a new connection per request (the agent's urllib client); 2 cores\n")
    print("| per camera request | plain HTTP ms | TLS ms | TLS costs |")
    print("|---|---:|---:|---:|")
    for name, p, t in (("GET /health (one handshake)", plain[0], tls[0]),
                       ("clip upload: slot + PUT + confirm (three handshakes)", plain[1], tls[1])):
        print(f"| {name} | {p:.1f} | {t:.1f} | +{t - p:.1f} ms |")


if __name__ == "__main__":
    main()
