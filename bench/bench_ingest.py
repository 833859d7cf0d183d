"""Ingest latency and throughput: upload completion → index record + thumbnail ready.

    python bench/bench_ingest.py [--clips 20] [--burst 60] [--devices 8]

Uses a real MinIO and the real runtime (in this process; the uploads are I/O-bound threads). The clip is
a 10 s 1280x720 15 fps fragmented MP4 made once by the project's encoder, with a motion metadata box, and
sealed afresh for every upload. Three parts, printed as tables:

1. latency at 1 clip/s (p50, p95), measured from the PUT's response to the index listener firing;
2. sustained rate with many devices uploading at once (clips/s);
3. where the time goes: each ingest step timed alone on the same clip, next to a plain MinIO GET of the
   sealed clip as the in-run baseline (the ratio column), and the derived bytes as a share of clip bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryospy.common.clipmeta import encode_meta_box
from cryospy.common.keys import verify_key_from_text
from cryospy.common.sealed import open_sealed
from cryospy.edge_agent.synthetic import make_sample_video
from cryospy.functions.clips import ingest
from cryospy.functions.clips.mp4 import parse_mp4
from cryospy.functions.clips.place import locate
from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer
from cryospy.infra.runtime import Runtime, RuntimeOptions
from tests.conftest import PASSPHRASE, new_deployment
from tests.support import FakeCamera


def make_clip(workdir: Path) -> bytes:
    path = make_sample_video(workdir / "clip.mp4", seconds=10, width=1280, height=720, fps=15)
    meta = {"motion": {"motion": True, "score": 0.1, "peak_s": 4.0, "intervals": [{"start_s": 2, "end_s": 6}]},
            "agent_version": "bench"}
    return path.read_bytes() + encode_meta_box(meta)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--burst", type=int, default=60)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cryospy-bench-ingest-"))
    clip = make_clip(work)
    dep = new_deployment(work / "d")
    indexed: dict[str, float] = {}
    lock = threading.Lock()

    def on_change(device_id: str, day: str) -> None:
        now = time.perf_counter()
        for c in rt.services.index.clips_for_day(device_id, day):
            if c.thumb_key:
                with lock:
                    indexed.setdefault(c.key, now)

    with MinioServer(dep, binary=ensure_minio()):
        rt = Runtime(dep, RuntimeOptions(reconcile_seconds=3600, workers=args.workers))
        rt.unlock(PASSPHRASE)
        rt.start()
        rt.services.index.add_listener(on_change)
        try:
            say = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
            say(f"latency: {args.clips} clips at 1 clip/s")
            # 1. latency at 1 clip/s
            cam = FakeCamera(dep, "latency", work)
            done_at: dict[str, float] = {}
            for _ in range(args.clips):
                t0 = time.perf_counter()
                key = cam.upload(clip)
                done_at[key] = time.perf_counter()
                time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(k in indexed for k in done_at):
                time.sleep(0.05)
            latencies = [indexed[k] - done_at[k] for k in done_at if k in indexed]
            say(f"latency done ({len(latencies)} measured); sustained: {args.burst} clips from {args.devices} devices")
            # 2. sustained: many devices at once
            cams = [FakeCamera(dep, f"burst-{i}", work) for i in range(args.devices)]
            prepared = [(c, *c.reserve(clip)) for i in range(args.burst) for c in [cams[i % len(cams)]]]
            t_start = time.perf_counter()
            threads = [threading.Thread(target=lambda part: [c.put(s, d) for c, s, d in part],
                                        args=(prepared[i::8],)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            keys = [s.key for _, s, _ in prepared]
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and not all(k in indexed for k in keys):
                time.sleep(0.05)
            sustained = len(keys) / (max(indexed[k] for k in keys) - t_start)
            say("sustained done; timing each step")
            # 3. where the time goes, on one clip
            key = keys[0]
            ck = locate(rt.services.devices, key)
            s3 = rt.services.handler_client
            steps: dict[str, float] = {}

            def timed(name: str, fn):  # type: ignore[no-untyped-def]
                best = float("inf")
                result = None
                for _ in range(5):
                    t = time.perf_counter()
                    result = fn()
                    best = min(best, time.perf_counter() - t)
                steps[name] = best
                return result

            sealed = timed("MinIO GET of the sealed clip (baseline)",
                           lambda: s3.get_object(Bucket=dep.bucket, Key=key)["Body"].read())
            keys_ = rt.services.vault.keys()
            signer = verify_key_from_text(rt.services.devices.get(ck.device_id).signing_key)
            import io

            def opened():  # type: ignore[no-untyped-def]
                return open_sealed(io.BytesIO(sealed), keyring=keys_, signer_public_key=signer,
                                   expected_object_key=key, size=len(sealed))

            reader = timed("open + verify signed trailer (full pass)", lambda: (r := opened(), r.verify_length())[0])
            info = timed("parse MP4 boxes through the decrypting reader",
                         lambda: parse_mp4(ingest._read_at(reader), reader.plaintext_size))
            jpeg = timed("thumbnail: decrypt one fragment, decode (PyAV), JPEG",
                         lambda: ingest._thumbnail(reader, info, 4.0))
            timed("seal thumbnail + PUT", lambda: ingest._store_thumbnail(rt.services, ck, jpeg))
            record = rt.services.index.get_clip(ck.device_id, ck.day, key)
            timed("index upsert (encrypted TinyDB shard)", lambda: rt.services.index.upsert_clip(record))
            index = rt.services.index
            indexed = [c for d in index.devices() for day in index.days(d) for c in index.clips_for_day(d, day)]
            clip_bytes = sum(c.sealed_size for c in indexed)
            derived = sum(c.thumb_size for c in indexed)
        finally:
            rt.stop()
    print(f"\n10 s 1280x720 15 fps clips ({len(clip) / 1e6:.1f} MB), {args.workers} workers, 2 cores\n")
    print("| measure | value | goal |")
    print("|---|---:|---|")
    print(f"| latency p50 (upload done -> index + thumbnail) | {statistics.median(latencies) * 1000:.0f} ms | |")
    print(f"| latency p95 | {pct(latencies, 95) * 1000:.0f} ms | <= 1000 ms |")
    print(f"| sustained, {args.devices} devices, {args.burst} clips | {sustained:.1f} clips/s | >= 20 clips/s |")
    print(f"| derived bytes / clip bytes | {100 * derived / clip_bytes:.2f} % | <= 3 % |")
    base = steps["MinIO GET of the sealed clip (baseline)"]
    print("\n| ingest step (best of 5) | ms | x MinIO GET |")
    print("|---|---:|---:|")
    for name, secs in steps.items():
        print(f"| {name} | {secs * 1000:.1f} | {secs / base:.2f} |")


if __name__ == "__main__":
    main()
