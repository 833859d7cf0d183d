"""Dashboard benchmarks: incremental and full rebuilds, clip start-up in Chromium, page weight.

    python bench/bench_dashboard.py [--quick] [--fragments 4] [--keep]

Prints four markdown tables, each number next to its goal (issue 7):

1. **Incremental rebuild** after one new clip, with 1,000 and with 100,000 clips already indexed, in the same
   run: ``TinyDBIndex.upsert_clip`` + ``SiteBuilder.on_index_change`` + ``SiteBuilder.flush``, median of 5.
   Both indexes have the same 4 devices and the same *current* day (250 clips per device, which the new clip
   joins); the 100,000-clip one adds 24,750 clips of history per device (about 17 days of 60-second clips).
   So the ratio isolates what history costs, which is what "the cost per clip does not grow" is about.
2. **Full rebuild** (``SiteBuilder.rebuild_all``) of 16 devices × 30 days of 60-second clips (691,200 clips;
   ``--quick``: 16 × 3 days, extrapolated linearly to 30 days and labelled as such).
3. **Clip page → first decoded frame** in Debian's Chromium against the real runtime and MinIO: from
   ``page.goto(day page)`` + a click on the clip until ``video.currentTime > 0``, median of 5, with a cold
   browser cache (a new context per run) and a warm one (assets cached, a clip never played before).
4. **Page weight without video**: bytes as transferred (gzip where the server sends it) for the overview, the
   day page of that one clip, and a full day page (1,440 clips), excluding ``/media/clip.mp4``.

Parts 1 and 2 build the index directly from synthetic records shaped like ``ingest`` writes them (60-second
clips, ``--fragments`` fragments each). Each day shard is written once with the index's own
``EncryptedJSONStorage`` instead of 1,440 ``upsert_clip`` calls that each rewrite the shard; the run first
proves on a small sample that this leaves byte-for-byte the same documents (after decryption) as
``upsert_clip`` would, and spot-checks the large indexes with ``get_clip`` and ``usage``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryospy.common.timefmt import utc_stamp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright

from cryospy.common.objectkeys import legacy_clip_key, thumbnail_key
from cryospy.functions.clips.place import locate
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.index.records import ClipRecord, fragments_doc
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.index.tinydb_files import EncryptedJSONStorage
from cryospy.functions.index.usage import LiveCounters, dir_name
from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.web.builder import SiteBuilder, day_page
from cryospy.web.site_store import SiteStore
from tests.conftest import PASSPHRASE, new_deployment
from tests.support import FakeCamera, sample_clip, wait_for

CLIPS_PER_DAY = 1440          # 60-second clips, around the clock
CLIP_SECONDS = 60.0
REPEATS = 5
CODEC = "avc1.42c01e"
TODAY = datetime(2026, 3, 1, tzinfo=UTC)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
VIEWPORT = {"width": 1280, "height": 800}


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def verdict(ok: bool) -> str:
    return "meets goal" if ok else "**misses goal**"


# -- synthetic index -------------------------------------------------------------------------------------
def _hash(device_id: str, sequence: int) -> bytes:
    return hashlib.sha256(f"{device_id}/{sequence}".encode()).digest()


def clip_record(device_id: str, captured_at: datetime, sequence: int, fragments: int) -> dict[str, Any]:
    """A record with every field ``ingest`` writes, in its order, for a 60-second 720p clip."""
    ck = legacy_clip_key(device_id, captured_at, sequence)   # synthetic records: the key form does not matter
    digest = _hash(device_id, sequence)
    plain = 3_000_000 + int.from_bytes(digest[:3], "big") % 2_000_000
    motion = digest[3] < 26                         # about one clip in ten
    init = 812
    step, seconds = (plain - init) // fragments, CLIP_SECONDS / fragments
    return {
        "key": ck.key, "device_id": device_id, "day": ck.day, "sequence": sequence,
        "captured_at": utc_stamp(ck.captured_at),
        "sealed_size": plain + 4_400 + plain // 16_384 * 16, "plain_size": plain,
        "header_hash": digest.hex(), "prev_hash": _hash(device_id, sequence - 1).hex(),
        "thumb_key": thumbnail_key(ck.key), "thumb_size": 9_000 + digest[4] * 40,
        "protected": False,
        "indexed_at": (ck.captured_at + timedelta(seconds=62)).isoformat(timespec="seconds"),
        "duration_s": CLIP_SECONDS, "width": 1280, "height": 720, "fps": 15.0, "codec": CODEC,
        "init_size": init,
        "fragments": [[init + i * step, step, round(i * seconds, 3), round(seconds, 3)] for i in range(fragments)],
        "motion": motion, "motion_score": round(digest[5] / 1000, 3) if motion else 0.0,
        "motion_intervals": [[12.5, 19.0]] if motion else [], "peak_s": 15.0 if motion else None,
        "agent": {"agent_version": "bench"}, "motion_error": False,
        "chain": "ok",
    }


@dataclass(frozen=True)
class DayPlan:
    day_start: datetime
    minutes: range


def device_plan(history_clips: int, today_clips: int) -> list[DayPlan]:
    """Oldest day first: full days of history (the oldest one partly filled), then today's first clips."""
    plans = [DayPlan(TODAY, range(today_clips))] if today_clips else []
    back, remaining = 1, history_clips
    while remaining > 0:
        n = min(CLIPS_PER_DAY, remaining)
        plans.insert(0, DayPlan(TODAY - timedelta(days=back), range(CLIPS_PER_DAY - n, CLIPS_PER_DAY)))
        remaining -= n
        back += 1
    return plans


def day_records(device_id: str, plan: DayPlan, first_sequence: int, fragments: int) -> list[ClipRecord]:
    return [ClipRecord.from_doc(clip_record(device_id, plan.day_start + timedelta(minutes=m), first_sequence + i,
                                            fragments))
            for i, m in enumerate(plan.minutes)]


def write_day(index: TinyDBIndex, records: list[ClipRecord]) -> None:
    """Write one device-day shard once: the documents, ids and order that upserting them in turn leaves.

    Uses the store's own shard path and storage class (``_shard``), under its lock."""
    first = records[0]
    stored = [r.to_doc(with_fragments=False) for r in records]    # what upsert_clip stores
    with index._lock, index._shard(first.device_id, first.day) as db:
        index.fragments.append(dir_name(first.device_id), first.day,
                               ((r.key, fragments_doc(r.fragments or ())) for r in records))
        db.storage.write({"clips": {str(i): r for i, r in enumerate(stored, 1)}})


def populate(index: TinyDBIndex, device_ids: list[str], plans: list[DayPlan], fragments: int) -> dict[str, int]:
    """Fill the index device by device; returns each device's next sequence number."""
    next_sequence = {}
    for device_id in device_ids:
        sequence, total_bytes, segments, last = 0, 0, 0, ""
        for plan in plans:
            records = []
            for record in day_records(device_id, plan, sequence, fragments):
                # the live-stream numbering upsert_clip stamps on clips arriving in order
                records.append(record.changed(live=(segments, sequence)))
                segments, sequence, last = segments + record.fragment_count, sequence + 1, record.captured_at
            write_day(index, records)
            total_bytes += sum(r.stored_bytes for r in records)
        # what the per-clip upserts would have summed to
        index._totals.add(device_id, total_bytes, sequence, LiveCounters(segments, sequence, last))
        next_sequence[device_id] = sequence
    return next_sequence


def _decrypted_files(root: Path, key: bytes) -> dict[str, str]:
    return {str(p.relative_to(root)): json.dumps(EncryptedJSONStorage(p, key=key).read())
            for p in sorted(root.rglob("*.db"))}


def check_bulk_equals_upsert(tmp: Path, fragments: int) -> None:
    """The bulk writer must leave exactly what upsert_clip leaves (ids, order, fields, usage totals)."""
    key = os.urandom(32)
    by_upsert, by_bulk = TinyDBIndex(tmp / "upsert", lambda: key), TinyDBIndex(tmp / "bulk", lambda: key)
    devices, plans = ["cam-a", "cam b+1"], device_plan(history_clips=9, today_clips=7)
    for device_id in devices:
        sequence = 0
        for plan in plans:
            for record in day_records(device_id, plan, sequence, fragments):
                by_upsert.upsert_clip(record)
            sequence += len(plan.minutes)
    populate(by_bulk, devices, plans, fragments)
    a, b = _decrypted_files(tmp / "upsert", key), _decrypted_files(tmp / "bulk", key)
    for device_id in devices:
        for plan in plans:
            day = plan.day_start.strftime("%Y-%m-%d")
            if by_upsert.fragments.day(dir_name(device_id), day) != by_bulk.fragments.day(dir_name(device_id), day):
                raise SystemExit(f"bulk-written fragment table differs from upsert_clip's: {device_id} {day}")
    if a != b:
        raise SystemExit(f"bulk-written index differs from upsert_clip's: {sorted(set(a) ^ set(b)) or 'contents'}")


def spot_check(index: TinyDBIndex, device_ids: list[str], plans: list[DayPlan], fragments: int) -> None:
    rng = random.Random(7)
    per_device = sum(len(p.minutes) for p in plans)
    for device_id in device_ids:
        if index.usage(device_id).clips != per_device:
            raise SystemExit(f"usage of {device_id} is {index.usage(device_id)}, expected {per_device} clips")
    for _ in range(20):
        device_id, p = rng.choice(device_ids), rng.randrange(len(plans))
        plan = plans[p]
        i = rng.randrange(len(plan.minutes))
        sequence = sum(len(q.minutes) for q in plans[:p]) + i
        want = clip_record(device_id, plan.day_start + timedelta(minutes=plan.minutes[i]), sequence, fragments)
        got = index.get_clip(device_id, want["day"], want["key"])
        if got is None or got.live is None or got.live[1] != sequence or got.fragment_count != fragments \
                or got.changed(live=None) != ClipRecord.from_doc(want):
            raise SystemExit(f"get_clip({want['key']}) does not return the record that was indexed")


@dataclass
class Site:
    index: TinyDBIndex
    registry: DeviceRegistry
    store: SiteStore
    builder: SiteBuilder


def new_site(root: Path, device_ids: list[str], now: datetime) -> Site:
    """An index, registry, page store and builder in ``root``; the builder's clock says ``now`` (for "today")."""
    key = os.urandom(32)
    index = TinyDBIndex(root / "index", lambda: key)
    registry = DeviceRegistry(root / "devices.json")
    for device_id in device_ids:
        registry.create(device_id, signing_key="bench-signing-key", settings={})
    store = SiteStore(root / "site", lambda: key)
    return Site(index, registry, store, SiteBuilder(index, registry, store, clock=lambda: now))


# -- 1. incremental rebuild ------------------------------------------------------------------------------
@dataclass
class Incremental:
    label: str
    site: Site
    device_id: str
    next_sequence: int
    next_minute: int
    clips: int
    shards: int

    def add_clip(self, fragments: int) -> tuple[float, float]:
        """One new clip for today: seconds spent in upsert, and in on_index_change + flush."""
        record = ClipRecord.from_doc(clip_record(self.device_id, TODAY + timedelta(minutes=self.next_minute),
                                                 self.next_sequence, fragments))
        self.next_sequence += 1
        self.next_minute += 1
        t0 = time.perf_counter()
        self.site.index.upsert_clip(record)
        t1 = time.perf_counter()
        self.site.builder.on_index_change(record.device_id, record.day)
        rendered = self.site.builder.flush()
        t2 = time.perf_counter()
        page = self.site.store.get(day_page(record.device_id, record.day))
        if rendered != 1 or page is None or record.key not in page:
            raise SystemExit(f"{self.label}: the day page was not re-rendered with the new clip")
        return t1 - t0, t2 - t1

    def render_parts(self) -> tuple[float, float]:
        """The two renders of a flush timed alone (for where the time goes)."""
        t0 = time.perf_counter()
        self.site.builder.render_day(self.device_id, TODAY.strftime("%Y-%m-%d"))
        t1 = time.perf_counter()
        self.site.builder.render_overview()
        return t1 - t0, time.perf_counter() - t1


def bench_incremental(tmp: Path, fragments: int) -> list[str]:
    devices, today = [f"cam-{n}" for n in range(4)], 250
    cases = []
    for label, history in (("1,000 clips", 0), ("100,000 clips", 24_750)):
        progress(f"incremental: indexing {label} ({len(devices)} devices, {today} clips each today)")
        plans = device_plan(history, today)
        site = new_site(tmp / f"inc-{history}", devices, now=TODAY + timedelta(hours=5))
        nxt = populate(site.index, devices, plans, fragments)
        spot_check(site.index, devices, plans, fragments)
        clips = sum(site.index.usage(d).clips for d in devices)
        cases.append(Incremental(label, site, devices[0], nxt[devices[0]], today, clips, len(plans) * len(devices)))
    for case in cases:
        case.add_clip(fragments)                    # warm-up: templates compiled, files cached
    samples: dict[str, list[tuple[float, float]]] = {c.label: [] for c in cases}
    for _ in range(REPEATS):
        for case in cases:                          # interleaved, so drift hits both alike
            samples[case.label].append(case.add_clip(fragments))
    parts = {c.label: [c.render_parts() for _ in range(REPEATS)] for c in cases}
    lines = ["## 1. Incremental rebuild after one new clip",
             "",
             f"upsert_clip + on_index_change + flush; median of {REPEATS}. Same 4 devices and the same current day "
             f"in both (the new clip joins {today} clips of today); history differs.",
             "",
             "| already indexed | day shards | upsert ms | on_index_change + flush ms | total ms | "
             "of which render_day ms | render_overview ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    totals = {}
    for case in cases:
        s = samples[case.label]
        up, fl = statistics.median(a for a, _ in s), statistics.median(b for _, b in s)
        totals[case.label] = statistics.median(a + b for a, b in s)
        day_s = statistics.median(a for a, _ in parts[case.label])
        ov_s = statistics.median(b for _, b in parts[case.label])
        lines.append(f"| {case.clips:,} | {case.shards} | {ms(up)} | {ms(fl)} | {ms(totals[case.label])} | "
                     f"{ms(day_s)} | {ms(ov_s)} |")
    ratio = totals[cases[1].label] / totals[cases[0].label]
    lines += ["", f"ratio 100,000 / 1,000 = **{ratio:.2f}** (goal ≤ 1.5: {verdict(ratio <= 1.5)})"]
    return lines


# -- 2. full rebuild -------------------------------------------------------------------------------------
def bench_full_rebuild(tmp: Path, days: int, fragments: int) -> list[str]:
    devices = [f"cam-{n:02d}" for n in range(16)]
    clips = len(devices) * days * CLIPS_PER_DAY
    progress(f"full rebuild: indexing {len(devices)} devices × {days} days = {clips:,} clips")
    site = new_site(tmp / "full", devices, now=TODAY - timedelta(seconds=1))   # late on the last full day
    plans = device_plan(days * CLIPS_PER_DAY, 0)
    t0 = time.perf_counter()
    populate(site.index, devices, plans, fragments)
    populate_s = time.perf_counter() - t0
    spot_check(site.index, devices, plans, fragments)
    progress(f"full rebuild: indexed in {populate_s:.1f} s; rebuild_all")
    t0 = time.perf_counter()
    site.builder.rebuild_all()
    rebuild_s = time.perf_counter() - t0
    pages = len(devices) * days
    sample = site.store.get(day_page(devices[0], plans[-1].day_start.strftime("%Y-%m-%d"))) or ""
    overview_s = min(_timed(site.builder.render_overview) for _ in range(3))
    shard_bytes = sum(p.stat().st_size for p in (tmp / "full" / "index" / "clips").rglob("*.db"))
    log_bytes = sum(p.stat().st_size for p in (tmp / "full" / "index" / "fragments").rglob("*.log"))
    lines = ["## 2. Full rebuild (SiteBuilder.rebuild_all)", "",
             "| devices × days | clips | day pages | indexing s (setup) | rebuild_all s | clips/s | goal |",
             "|---|---:|---:|---:|---:|---:|---|"]
    lines.append(f"| 16 × {days} (measured) | {clips:,} | {pages} | {populate_s:.1f} | {rebuild_s:.1f} | "
                 f"{clips / rebuild_s:,.0f} | ≤ 60 s at 16 × 30: "
                 f"{verdict(rebuild_s <= 60) if days == 30 else 'see below'} |")
    if days != 30:
        full = rebuild_s * 30 / days
        lines.append(f"| 16 × 30 (**extrapolated** linearly from 16 × {days}, not measured) | "
                     f"{len(devices) * 30 * CLIPS_PER_DAY:,} | {len(devices) * 30} | – | {full:.1f} | "
                     f"{clips / rebuild_s:,.0f} | ≤ 60 s: {verdict(full <= 60)} |")
    page_kb, gzip_kb = len(sample.encode()) / 1024, len(gzip.compress(sample.encode(), 6)) / 1024
    lines += ["", f"per day page: {rebuild_s / pages * 1000:.0f} ms; a full day page is {page_kb:,.0f} KB of HTML "
              f"({gzip_kb:,.0f} KB gzip-encoded, as the server sends it); "
              f"the index is {shard_bytes / 1048576:,.0f} MB of day shards ({shard_bytes // clips:,} B a clip) "
              f"and {log_bytes / 1048576:,.0f} MB of fragment tables ({log_bytes // clips:,} B a clip) on disk; "
              f"one render_overview with 16 devices and a full day each: {overview_s * 1000:.0f} ms"]
    shutil.rmtree(tmp / "full", ignore_errors=True)
    return lines


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- 3 and 4. in Chromium --------------------------------------------------------------------------------
# Registered before the click: when the click lands, when the first frame is presented (requestVideoFrameCallback)
# and when currentTime first moves. performance.now() counts from the navigation's start.
INSTRUMENT = """() => {
  const v = document.getElementById('video');
  const marks = window.__bench = {};
  document.addEventListener('click', () => { marks.click ??= performance.now(); }, true);
  v.addEventListener('timeupdate', () => { if (v.currentTime > 0) marks.advanced ??= performance.now(); });
  if (typeof v.requestVideoFrameCallback === 'function') {
    v.requestVideoFrameCallback((now, meta) => { marks.frame = meta.presentationTime || now; });
  }
}"""
READ_STATE = "() => [document.getElementById('video').currentTime, window.__bench || {}]"


@dataclass
class FirstFrame:
    wall: float                 # seconds, page.goto → currentTime > 0 seen by the 20 ms poll
    nav_to_frame: float | None  # ms in the page, navigation start → first presented frame
    click_to_frame: float | None


def first_frame(context: Any, url: str, key: str) -> FirstFrame:
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(url, wait_until="domcontentloaded")
        page.evaluate(INSTRUMENT)
        page.click(f"a.play[data-key='{key}']")
        deadline = t0 + 30
        while True:
            current, marks = page.evaluate(READ_STATE)
            if current > 0:
                wall = time.perf_counter() - t0
                break
            if time.perf_counter() > deadline:
                raise SystemExit(f"the clip {key} did not start playing within 30 s")
            time.sleep(0.02)
        for _ in range(25):             # the frame callback may land a moment after currentTime moves
            if "frame" in marks:
                break
            time.sleep(0.02)
            marks = page.evaluate(READ_STATE)[1]
        frame = marks.get("frame", marks.get("advanced"))
        click = marks.get("click")
        return FirstFrame(wall, frame, frame - click if frame is not None and click is not None else None)
    finally:
        page.close()


@dataclass
class Weight:
    label: str
    document: int
    static: int
    images: int
    image_count: int
    other: int

    @property
    def total(self) -> int:
        return self.document + self.static + self.images + self.other


def page_weight(browser: Any, state: dict[str, Any], url: str, label: str) -> Weight:
    """Bytes as transferred (encoded body sizes) of everything a fresh, logged-in browser loads for ``url``."""
    context = browser.new_context(storage_state=state, viewport=VIEWPORT)
    page = context.new_page()
    finished: list[Any] = []
    page.on("requestfinished", lambda request: finished.append(request))
    page.goto(url, wait_until="networkidle")
    weight = Weight(label, 0, 0, 0, 0, 0)
    for request in finished:
        if "/media/clip.mp4" in request.url:
            continue
        body = request.sizes()["responseBodySize"]
        response = request.response()
        declared = response.headers.get("content-length") if response else None
        if declared is not None and int(declared) != body:
            progress(f"note: {request.url} declared {declared} B, transferred {body} B")
        kind = request.resource_type
        if kind == "document":
            weight.document += body
        elif kind in ("script", "stylesheet"):
            weight.static += body
        elif kind == "image":
            weight.images += body
            weight.image_count += 1
        else:
            weight.other += body
    context.close()
    return weight



def log_in(browser: Any, base: str) -> dict[str, Any]:
    """Log in through the form once; later contexts reuse the session cookie (and start with an empty cache)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=passphrase]", PASSPHRASE)
    page.click("button[type=submit]")
    page.wait_for_selector("section.device[data-device='bench-cam']")
    state = context.storage_state()
    context.close()
    return state


def add_full_day(runtime: Runtime, day: str, real: ClipRecord, fragments: int) -> str:
    """A second camera with a full day of synthetic clips, whose thumbnails are the real clip's (so they load)."""
    device_id = "bench-full"
    runtime.services.devices.create(device_id, signing_key="bench-signing-key", settings={})
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    records = [r.changed(thumb_key=real.thumb_key, thumb_size=real.thumb_size)
               for r in day_records(device_id, DayPlan(start, range(CLIPS_PER_DAY)), 0, fragments)]
    index = runtime.services.index
    write_day(index, records)
    index._totals.add(device_id, sum(r.stored_bytes for r in records), len(records))
    runtime.builder.on_index_change(device_id, day)    # the runtime's render thread picks it up
    path = day_page(device_id, day)
    wait_for(lambda: records[-1].key in (runtime.site.get(path) or ""), timeout=120, what="the full day page")
    return path


def _idle_builder(runtime: Runtime) -> None:
    """Logging in starts rebuild_all in a thread; wait for it so it does not share the CPU with a measurement."""
    time.sleep(0.5)
    with runtime.builder._lock:
        pass


def bench_browser(tmp: Path, fragments: int) -> list[str]:
    dep = new_deployment(tmp / "deployment")
    with MinioServer(dep, binary=ensure_minio()):
        runtime = Runtime(dep, RuntimeOptions(reconcile_seconds=3600))
        runtime.unlock(PASSPHRASE)
        runtime.start()
        try:
            return _in_browser(runtime, dep, tmp, fragments)
        finally:
            runtime.stop()


def _in_browser(runtime: Runtime, dep: Any, tmp: Path, fragments: int) -> list[str]:
    progress("browser: uploading real clips (4 s, 640×360) through the API and MinIO")
    camera = FakeCamera(dep, "bench-cam", tmp / "camera")
    clip = sample_clip(seconds=4.0, width=640, height=360)
    keys = [camera.upload(clip) for _ in range(1 + REPEATS)]   # [0] for cold runs; one never-played clip per warm run
    ck = locate(runtime.services.devices, keys[0])
    index = runtime.services.index
    wait_for(lambda: all(index.get_clip(ck.device_id, ck.day, k) for k in keys), timeout=60, what="indexing")
    path = day_page(ck.device_id, ck.day)
    wait_for(lambda: all(k in (runtime.site.get(path) or "") for k in keys), timeout=60, what="the day page")
    real = index.get_clip(ck.device_id, ck.day, keys[0])
    if real is None or not real.thumb_key:
        raise SystemExit("the real clip has no thumbnail; page weights would be understated")
    base, url = dep.runtime_url, dep.runtime_url + "/" + path
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            state = log_in(browser, base)
            _idle_builder(runtime)
            progress("browser: clip page → first frame, cold cache")
            cold = []
            for _ in range(REPEATS):
                context = browser.new_context(storage_state=state, viewport=VIEWPORT)
                cold.append(first_frame(context, url, keys[0]))
                context.close()
            progress("browser: clip page → first frame, warm cache")
            context = browser.new_context(storage_state=state, viewport=VIEWPORT)
            warmup = context.new_page()
            warmup.goto(url, wait_until="networkidle")
            warmup.close()
            warm = [first_frame(context, url, key) for key in keys[1:]]
            context.close()
            progress("browser: page weights")
            full = add_full_day(runtime, ck.day, real, fragments)
            weights = [page_weight(browser, state, base + "/", "overview (2 cameras)"),
                       page_weight(browser, state, url, f"day page, {len(keys)} clips"),
                       page_weight(browser, state, base + "/" + full, f"day page, {CLIPS_PER_DAY:,} clips (full day)")]
            version = browser.version
        finally:
            browser.close()
    return _browser_tables(version, cold, warm, weights)


def _med(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):.0f}" if present else "n/a"


def _browser_tables(version: str, cold: list[FirstFrame], warm: list[FirstFrame], weights: list[Weight]) -> list[str]:
    lines = [f"## 3. Clip page → first decoded frame (Chromium {version}, headless, loopback)", "",
             "Wall: page.goto(day page) + click on the clip → `video.currentTime > 0` seen by a 20 ms poll. "
             "In page: performance.now() marks; first frame = requestVideoFrameCallback's presentation time.", "",
             "| browser cache | runs | median wall ms | min–max ms | in page: navigation → first frame ms | "
             "in page: click → first frame ms | goal |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for label, runs in (("cold (new context, logged in)", cold), ("warm (assets cached, new clip)", warm)):
        walls = [r.wall for r in runs]
        median = statistics.median(walls)
        lines.append(f"| {label} | {len(runs)} | {median * 1000:.0f} | {min(walls) * 1000:.0f}–{max(walls) * 1000:.0f}"
                     f" | {_med([r.nav_to_frame for r in runs])} | {_med([r.click_to_frame for r in runs])} | "
                     f"≤ 1000 ms: {verdict(median <= 1.0)} |")
    heaviest = max(weights, key=lambda w: w.total)
    lines += ["", "## 4. Page weight without video (bytes as transferred, fresh cache, /media/clip.mp4 excluded)", "",
              "| page | document KB | CSS + JS KB | thumbnails | other KB | total KB | goal |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for w in weights:
        lines.append(f"| {w.label} | {w.document / 1024:.1f} | {w.static / 1024:.1f} | {w.image_count} = "
                     f"{w.images / 1024:.1f} KB | {w.other / 1024:.1f} | {w.total / 1024:.1f} | "
                     f"≤ 300 KB: {verdict(w.total <= 300 * 1024)} |")
    lines += ["", f"heaviest page: {heaviest.label}, {heaviest.total / 1024:.1f} KB (goal ≤ 300 KB: "
              f"{verdict(heaviest.total <= 300 * 1024)})"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="full rebuild at 16 × 3 days, extrapolated to 30")
    parser.add_argument("--fragments", type=int, default=4,
                        help="fragments per synthetic clip record (the agent's default 1 s keyframes give 60)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()
    if not 1 <= args.fragments <= 600:
        parser.error(f"--fragments {args.fragments}: use 1..600 (a 60-second clip has at most 600 at 10 fps)")
    tmp = Path(tempfile.mkdtemp(prefix="cryospy-bench-dashboard-"))
    started = time.perf_counter()
    print(f"# Dashboard benchmark ({'--quick' if args.quick else 'full'}): {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {args.fragments} fragments per synthetic clip record (a real "
          "60-second clip at the agent's default 1-second keyframes has 60: `--fragments 60`)\n", flush=True)
    try:
        check_bulk_equals_upsert(tmp / "check", args.fragments)
        progress("bulk-written shards match upsert_clip's exactly")
        for section in (lambda: bench_incremental(tmp, args.fragments),
                        lambda: bench_full_rebuild(tmp, 3 if args.quick else 30, args.fragments),
                        lambda: bench_browser(tmp, args.fragments)):
            print("\n".join(section()) + "\n", flush=True)
    finally:
        if args.keep:
            progress(f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"_whole run: {time.perf_counter() - started:.0f} s_")


if __name__ == "__main__":
    main()
