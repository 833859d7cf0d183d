"""Retention cost per new clip, with 1,000 and with 100,000 clips of history.

    python bench/bench_retention.py [--clips 1000,100000] [--per-day 500] [--rounds 30]

Why: retention runs after every new clip. Issue 13 asks that its cost not grow with the device's history
(goal: the 100,000-clip figure at most 1.5x the 1,000-clip one). One command, both sizes, same run.

What runs: the real encrypted TinyDB index (:mod:`cryospy.functions.index`), a real device registry holding a
quota that the history fills exactly, and the real :func:`cryospy.functions.retention.policy.enforce_device`.
Each round indexes one new clip (1 MiB) through the index, which puts the device one clip over its quota, then
times ``enforce_device``, which must delete exactly the oldest clip. Only the bucket is faked (a no-op
``delete_object``): this measures the index side, which is the part that grew with history.

The history is synthetic: ``--per-day`` clips per UTC day written straight into day shards (the on-disk format
the index reads), so building 100,000 records takes seconds instead of 100,000 indexing steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinydb import TinyDB

from cryospy.functions.alerts.rules import Alerts
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.index.tinydb_files import EncryptedJSONStorage
from cryospy.functions.retention import policy

DEVICE = "bench-cam"
CLIP_BYTES = 1024 * 1024
START = datetime(2024, 1, 1, tzinfo=UTC)


class NoBucket:
    """The bucket side of a deletion, counted and skipped."""

    def __init__(self) -> None:
        self.deleted = 0

    def delete_object(self, **_: Any) -> None:
        self.deleted += 1


@dataclass
class BenchServices:
    """What :mod:`policy` reads of the runtime's services, nothing more."""
    index: TinyDBIndex
    devices: DeviceRegistry
    handler_client: NoBucket = field(default_factory=NoBucket)
    bucket: str = "cryospy"
    alerts: Alerts = field(default_factory=Alerts.off)
    storage_warning_threshold: float = 0.8
    quarantine_limit_bytes: int = 1024 * 1024 * 1024


def doc(n: int, per_day: int) -> dict[str, Any]:
    """Clip number ``n`` of the history: ``per_day`` a day, evenly spread."""
    at = START + timedelta(days=n // per_day, seconds=(n % per_day) * 86_400 // per_day)
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"key": f"clips/{DEVICE}/{stamp[:10]}/{n:09d}.cspy", "device_id": DEVICE, "day": stamp[:10],
            "sequence": n, "captured_at": stamp, "sealed_size": CLIP_BYTES, "plain_size": CLIP_BYTES,
            "header_hash": f"{n:064x}", "prev_hash": f"{max(n - 1, 0):064x}", "thumb_key": None, "thumb_size": 0,
            "protected": False, "indexed_at": stamp, "duration_s": 60.0, "width": 1280, "height": 720,
            "fps": 15.0, "codec": "avc1.64001f", "init_size": 800, "fragment_count": 0, "motion": n % 3 == 0,
            "motion_score": 0.1, "motion_intervals": [], "peak_s": None, "agent": {}, "motion_error": False,
            "audio_codec": None, "record_mode": "transcode", "source_gap": None, "chain": "ok"}


def build_history(root: Path, key: bytes, clips: int, per_day: int) -> None:
    """Write the day shards and the usage totals directly, as the index would have after ``clips`` inserts."""
    device_dir = root / "clips" / DEVICE.encode().hex()
    for first in range(0, clips, per_day):
        docs = [doc(n, per_day) for n in range(first, min(first + per_day, clips))]
        with TinyDB(device_dir / f"{docs[0]['day']}.db", storage=EncryptedJSONStorage, key=key) as db:
            db.table("clips", cache_size=0).insert_multiple(docs)
    with TinyDB(root / "usage.db", storage=EncryptedJSONStorage, key=key) as db:
        db.table("usage", cache_size=0).insert({"device_id": DEVICE, "bytes": clips * CLIP_BYTES, "clips": clips})


def measure(clips: int, per_day: int, rounds: int) -> tuple[list[float], int]:
    """Seconds per ``enforce_device`` call over ``rounds`` new clips, and the clips it deleted."""
    with tempfile.TemporaryDirectory(prefix="cryospy-bench-retention-") as tmp:
        root, key = Path(tmp) / "index", os.urandom(32)
        build_history(root, key, clips, per_day)
        devices = DeviceRegistry(Path(tmp) / "devices.json")
        devices.create(DEVICE, None, {"storage_limit_megabytes": clips})
        services = BenchServices(TinyDBIndex(root, lambda: key), devices)
        times, deleted = [], 0
        for i in range(rounds):
            # Newest clip of the history's last day, after the history: a camera that keeps recording.
            services.index.upsert_clip(ClipRecord.from_doc(doc(clips + i, per_day)))
            started = time.perf_counter()
            result = policy.enforce_device(services, DEVICE)   # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
            deleted += len(result.deleted)
        services.index.close()
        return times, deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="1000,100000", help="history sizes, comma-separated")
    parser.add_argument("--per-day", type=int, default=500, help="clips per UTC day in the history")
    parser.add_argument("--rounds", type=int, default=30, help="new clips (retention passes) per size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.clips.split(",")]
    print(f"\nRetention after each new clip: {args.rounds} new clips per history, {args.per_day} clips/day, "
          "quota full (each pass deletes the oldest clip)\n")
    print("| history | clips deleted | median per clip | mean per clip | max |")
    print("|---|---|---|---|---|")
    medians = []
    for size in sizes:
        times, deleted = measure(size, args.per_day, args.rounds)
        medians.append(statistics.median(times))
        print(f"| {size:,} clips | {deleted} | {medians[-1] * 1e3:.2f} ms | {statistics.mean(times) * 1e3:.2f} ms "
              f"| {max(times) * 1e3:.2f} ms |")
    if len(sizes) > 1:
        ratio = medians[-1] / medians[0]
        print(f"\nratio {sizes[-1]:,} / {sizes[0]:,} clips of history: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
