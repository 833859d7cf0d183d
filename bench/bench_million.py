"""The clip index and the dashboard at 1,000,000 clips on PostgreSQL, against 1,000 clips in the same run.

    python bench/bench_million.py [--clips 1000000] [--small 1000] [--cameras 20] [--per-day 350]
                                  [--today 50] [--repeats 7] [--full-rebuild-limit 300] [--fsync]

Why: issue 18's benchmark asks for "index query and dashboard rebuild times at 1 M clips on PostgreSQL", with
the goal "dashboard incremental rebuild at 1 M clips ≤ 1.5x its cost at 1 k". The machine is shared and
noisy, so both sizes live in one PostgreSQL (a database each) and every timed step alternates between them;
the ratios are the result, the milliseconds are this run's.

**The data.** ``--cameras`` cameras share the clips evenly. Each has the same *current* day (``--today``
clips, which every new clip joins) in both sizes; the large one adds full days of history before it,
``--per-day`` clips a day (the oldest day partly filled). With the defaults: 1,000 clips = 20 cameras × 50
clips today; 1,000,000 = 20 cameras × (50 today + 49,950 over 143 days). So a ratio isolates what history
costs, not a bigger day page. Records are what ingest writes for a 30-second 720p clip with 10 fragments
(object key under a storage token, hashes, thumbnail, motion on about one clip in five, agent details,
chain verdict) and are numbered into the live stream by the store's own ``live_stamp``.

**Loading** goes through :meth:`PostgresIndex.import_day` (the migration's path: one transaction and one
``COPY`` per camera-day, rows sealed and hashed by the index itself, totals kept in the same transaction) and
:meth:`PostgresIndex.import_device` (live counters), two cameras at a time, with progress on stderr. Then
``VACUUM ANALYZE``, as autovacuum would leave a long-lived database; a spot check reads random clips back.

**Measured** (median of ``--repeats``, alternating sizes):

1. the index calls the dashboard, the API and the jobs make (the table names each);
2. the incremental rebuild after one new clip, as a runtime does it when another runtime writes the clip:
   ``upsert_clip`` on a second :class:`PostgresIndex` (another writer id), the runtime's index hears the
   ``NOTIFY`` and calls ``SiteBuilder.on_index_change`` (its listener), then ``SiteBuilder.flush`` renders
   the day page and the overview and live pages into a temporary :class:`SiteStore` (sealed pages);
3. the full rebuild (``SiteBuilder.rebuild_all``, what a runtime does at start): measured at the small
   size, and at the large one when an estimate from a sample of day pages stays under
   ``--full-rebuild-limit`` seconds (otherwise the estimate is printed and labelled as such);
4. what each of those reads at the large size: every statement's plan, by ``auto_explain`` in the server
   (the index's own statements, not copies; tests/pg_plans.py): which indexes, rows read from
   ``index_clips``, any sequential scan;
5. the size of the large schema on disk.

PostgreSQL is Debian's PostgreSQL 15, started for the run in a temporary directory as the tests start it
(tests/postgres_server.py), on loopback, ``fsync=off`` unless ``--fsync`` (loading and reads, not commit
latency, are what this measures).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.postgres_server: the server we measure

import psycopg

from cryospy.common.database import open_pool
from cryospy.common.objectkeys import clip_key, thumbnail_key
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.query import ClipQuery
from cryospy.functions.index.records import ClipRecord, DeviceUsage, fragments_from
from cryospy.functions.index.transfer import DeviceTotals
from cryospy.functions.index.usage import LiveCounters, live_stamp
from cryospy.web.builder import SiteBuilder, day_page
from cryospy.web.site_store import SiteStore
from tests.pg_plans import PlanRecorder, Reads
from tests.postgres_server import PostgresServer, start_for_bench, stop_for_bench

TODAY = datetime(2026, 6, 1, tzinfo=UTC)
CLIP_SECONDS = 30.0
FRAGMENTS = 10


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- the data ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    name: str

    @property
    def token(self) -> str:
        """A storage token of the real form, fixed per name so runs are alike."""
        digest = hashlib.sha256(self.name.encode()).digest()
        return "_" + base64.b32encode(digest[:17]).decode().lower()[:26]


@dataclass(frozen=True)
class Scale:
    label: str
    clips: int
    cameras: list[Camera]
    per_day: int
    today: int

    @property
    def spacing(self) -> timedelta:
        return timedelta(seconds=86400 / self.per_day)

    @property
    def per_camera(self) -> int:
        return self.clips // len(self.cameras)

    def plan(self) -> list[tuple[datetime, range]]:
        """Oldest day first: (midnight, slots of that day); today's clips are its first slots."""
        today = min(self.today, self.per_camera)
        days = [(TODAY, range(today))]
        remaining, back = self.per_camera - today, 1
        while remaining > 0:
            n = min(self.per_day, remaining)
            days.insert(0, (TODAY - timedelta(days=back), range(self.per_day - n, self.per_day)))
            remaining, back = remaining - n, back + 1
        return days


def clip(camera: Camera, at: datetime, sequence: int) -> ClipRecord:
    """What ingest indexes for a 30-second 720p clip with 10 fragments."""
    ck = clip_key(camera.token, at, sequence)
    digest = hashlib.sha256(f"{camera.name}/{sequence}".encode()).digest()
    plain = 1_500_000 + int.from_bytes(digest[:3], "big") % 1_000_000
    motion = digest[3] < 51
    init, step, seconds = 812, (plain - 812) // FRAGMENTS, CLIP_SECONDS / FRAGMENTS
    stamp = utc_stamp(ck.captured_at)
    return ClipRecord(
        key=ck.key, device_id=camera.name, day=ck.day, captured_at=stamp, sequence=sequence,
        sealed_size=plain + 4_400 + plain // 16_384 * 16, plain_size=plain, header_hash=digest.hex(),
        prev_hash=hashlib.sha256(f"{camera.name}/{sequence - 1}".encode()).hexdigest(),
        thumb_key=thumbnail_key(ck.key), thumb_size=9_000 + digest[4] * 40,
        indexed_at=utc_stamp(ck.captured_at + timedelta(seconds=33)), duration_s=CLIP_SECONDS, width=1280,
        height=720, fps=15.0, codec="avc1.64001f", init_size=init,
        fragments=fragments_from([[init + i * step, step, round(i * seconds, 3), seconds] for i in range(FRAGMENTS)]),
        motion=motion, motion_score=round(digest[5] / 1000, 3) if motion else 0.0,
        motion_intervals=((4.5, 12.0),) if motion else (), peak_s=8.0 if motion else None,
        agent={"agent_version": "0.9.0", "host": "edge-1", "source": "rtsp"}, record_mode="motion",
        chain="ok")


class Loading:
    """Progress of a load over threads: clips done, printed every 5 %."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.start = label, total, 0, time.perf_counter()
        self._lock, self._next = threading.Lock(), 0.05

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self.done / self.total >= self._next or self.done == self.total:
                elapsed = time.perf_counter() - self.start
                rate = self.done / elapsed
                progress(f"{self.label}: {self.done:,}/{self.total:,} clips, {rate:,.0f} clips/s, "
                         f"{(self.total - self.done) / rate:,.0f} s to go")
                self._next = self.done / self.total + 0.05


def load(index: PostgresIndex, scale: Scale) -> tuple[float, dict[str, int]]:
    """Index every camera's history through import_day; returns the seconds taken and each camera's next
    sequence number."""
    plan = scale.plan()
    loading = Loading(f"loading {scale.label}", scale.per_camera * len(scale.cameras))
    nxt: dict[str, int] = {}

    def one_camera(camera: Camera) -> None:
        sequence, live = 0, LiveCounters()
        for midnight, slots in plan:
            records = []
            for slot in slots:
                record, after = live_stamp(live, clip(camera, midnight + slot * scale.spacing, sequence))
                records.append(record)
                live, sequence = after or live, sequence + 1
            if records:
                index.import_day(camera.name, records[0].day, records)
                loading.add(len(records))
        index.import_device(DeviceTotals(camera.name, DeviceUsage(), live))
        nxt[camera.name] = sequence

    with ThreadPoolExecutor(2) as pool:      # one seals while the other's COPY is in the database
        list(pool.map(one_camera, scale.cameras))
    return time.perf_counter() - loading.start, nxt


def spot_check(index: PostgresIndex, scale: Scale) -> None:
    """Random clips read back equal to what was built, and the running totals count every clip."""
    rng, plan = random.Random(7), scale.plan()
    for camera in scale.cameras:
        if index.usage(camera.name).clips != scale.per_camera:
            raise SystemExit(f"{scale.label}: {camera.name} has {index.usage(camera.name).clips} clips indexed, "
                             f"expected {scale.per_camera}")
    for _ in range(20):
        camera, d = rng.choice(scale.cameras), rng.randrange(len(plan))
        midnight, slots = plan[d]
        if not slots:
            continue
        i = rng.randrange(len(slots))
        sequence = sum(len(s) for _, s in plan[:d]) + i
        want = clip(camera, midnight + slots[i] * scale.spacing, sequence)
        got = index.get_clip(camera.name, want.day, want.key)
        if got is None or got.live is None or got.live[1] != sequence or got.changed(live=None) != want:
            raise SystemExit(f"{scale.label}: get_clip({want.key}) does not return the record that was loaded")


# -- one size: its database, index, dashboard ------------------------------------------------------------
class TimedStore(SiteStore):
    """The runtime's page store, keeping count of the time spent sealing and writing pages (each write is two
    fsyncs, whose latency on a shared disk is the noisiest part of a rebuild)."""

    spent = 0.0

    def put(self, page: str, html: str) -> None:
        t0 = time.perf_counter()
        super().put(page, html)
        self.spent += time.perf_counter() - t0


@dataclass
class Site:
    scale: Scale
    url: str
    index: PostgresIndex           # the runtime's: its builder listens here
    writer: PostgresIndex          # another runtime's, which ingests the new clips
    builder: SiteBuilder
    store: TimedStore
    next_sequence: dict[str, int]
    heard: threading.Event = field(default_factory=threading.Event)
    added: int = 0
    load_s: float = 0.0

    @property
    def today(self) -> str:
        return TODAY.strftime("%Y-%m-%d")

    def new_clip(self) -> ClipRecord:
        camera = self.scale.cameras[self.added % len(self.scale.cameras)]
        sequence = self.next_sequence[camera.name]
        self.next_sequence[camera.name] += 1
        slot = min(self.scale.today, self.scale.per_camera) + self.added // len(self.scale.cameras)
        self.added += 1
        return clip(camera, TODAY + slot * self.scale.spacing, sequence)

    def add_clip(self) -> tuple[float, float, float, float]:
        """One new clip written by another runtime: seconds to upsert, until the NOTIFY reached the builder,
        to render (flush), and of that the page writes."""
        record = self.new_clip()
        self.heard.clear()
        t0 = time.perf_counter()
        self.writer.upsert_clip(record)
        t1 = time.perf_counter()
        if not self.heard.wait(60):
            raise SystemExit(f"{self.scale.label}: the runtime's index never heard the new clip's NOTIFY")
        t2 = time.perf_counter()
        self.store.spent = 0.0
        rendered = self.builder.flush()
        t3 = time.perf_counter()
        page = self.store.get(day_page(record.device_id, record.day))
        if rendered != 1 or page is None or record.key not in page:
            raise SystemExit(f"{self.scale.label}: the day page was not re-rendered with the new clip")
        return t1 - t0, t2 - t1, t3 - t2, self.store.spent


def database(server: PostgresServer, name: str) -> str:
    """A database of its own for one size: NOTIFY is per database, and each size's runtime must hear only
    its own writer."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def new_site(server: PostgresServer, scale: Scale, root: Path, key: bytes, now: datetime) -> Site:
    url = database(server, root.name.replace("-", "_"))
    index = PostgresIndex(open_pool(url, max_size=4, name="bench-runtime"), lambda: key)
    load_s, nxt = load(index, scale)
    spot_check(index, scale)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE index_clips")
        conn.execute("VACUUM ANALYZE index_devices")
    root.mkdir(parents=True, exist_ok=True)
    registry = DeviceRegistry(root / "devices.json")
    for camera in scale.cameras:
        registry.create(camera.name, signing_key="bench-signing-key", settings={}, storage_token=camera.token)
    store = TimedStore(root / "site", lambda: key)
    builder = SiteBuilder(index, registry, store, clock=lambda: now)
    writer = PostgresIndex(open_pool(url, max_size=2, name="bench-writer"), lambda: key)
    site = Site(scale, url, index, writer, builder, store, nxt, load_s=load_s)

    def listener(device_id: str, day: str) -> None:   # what the runtime registers, and a signal for the clock
        builder.on_index_change(device_id, day)
        site.heard.set()

    index.add_listener(listener)
    return site


# -- what is measured --------------------------------------------------------------------------------------
def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def alternate(sites: list[Site], repeats: int, work: Callable[[Site], object]) -> list[float]:
    """Median seconds per site of ``work``, the sites taking turns (so drift on the machine hits both)."""
    times: list[list[float]] = [[] for _ in sites]
    for _ in range(repeats):
        for i, site in enumerate(sites):
            t0 = time.perf_counter()
            work(site)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def operations(site: Site) -> list[tuple[str, Callable[[], object]]]:
    """The index calls to time: (what, call)."""
    index, cam = site.index, site.scale.cameras[0].name
    today = site.today
    last = site.next_sequence[cam] - 1
    day_from, day_to = f"{today}T00:00:00Z", f"{today}T23:59:59Z"
    newest = ClipQuery.parse({"limit": "50"})
    motion = ClipQuery.parse({"device": cam, "motion": "true", "limit": "50"})
    motion_day = ClipQuery.parse({"device": cam, "motion": "true", "limit": "50", "from": day_from, "to": day_to})
    day_range = ClipQuery.parse({"from": day_from, "to": day_to, "limit": "50"})
    return [
        ("one camera's day, today (clips_for_day: a day page)", lambda: index.clips_for_day(cam, today)),
        ("one camera's days, all (days: rebuild_all)", lambda: index.days(cam)),
        ("one camera's newest 7 days (days newest=7: overview)", lambda: index.days(cam, newest=7)),
        ("a day's neighbours (adjacent_days: day page links)", lambda: index.adjacent_days(cam, today)),
        ("newest 50, all cameras (query)", lambda: index.query(newest)),
        ("newest 50 motion, one camera, no range (query)", lambda: index.query(motion)),
        ("newest 50 motion, one camera, today (query)", lambda: index.query(motion_day)),
        ("day range today, all cameras, newest 50 + count (query)", lambda: index.query(day_range)),
        ("totals, all cameras (usage)", lambda: index.usage()),
        ("oldest unprotected, one camera (retention)", lambda: next(iter(index.oldest_unprotected(cam)))),
        ("oldest unprotected, all cameras (global budget)", lambda: next(iter(index.oldest_unprotected()))),
        ("predecessor by sequence (find_sequence: chain check)",
         lambda: index.find_sequence(cam, last - 1, today, -1)),
        ("newest live clips (live_clips: live view)", lambda: index.live_clips(cam)),
    ]


def render_parts(site: Site) -> tuple[float, float]:
    cam = site.scale.cameras[0].name
    t0 = time.perf_counter()
    site.builder.render_day(cam, site.today)
    t1 = time.perf_counter()
    site.builder.render_overview()
    return t1 - t0, time.perf_counter() - t1


def full_rebuild(site: Site, limit_s: float) -> tuple[float, bool, int]:
    """Seconds for rebuild_all (measured, True) or its estimate from 20 day pages (False); day pages."""
    pages = sum(len(site.index.days(c.name)) for c in site.scale.cameras)
    sample = [(c.name, d) for c in site.scale.cameras for d in site.index.days(c.name)]
    random.Random(3).shuffle(sample)
    sample = sample[:20]
    t0 = time.perf_counter()
    for device_id, day in sample:
        site.builder.render_day(device_id, day)
    per_page = (time.perf_counter() - t0) / len(sample)
    t0 = time.perf_counter()
    site.builder.render_overview()
    estimate = per_page * pages + (time.perf_counter() - t0)
    if estimate > limit_s:
        return estimate, False, pages
    progress(f"{site.scale.label}: full rebuild of {pages:,} day pages (estimated {estimate:,.0f} s)")
    t0 = time.perf_counter()
    site.builder.rebuild_all()
    return time.perf_counter() - t0, True, pages


# -- what the statements read (auto_explain) --------------------------------------------------------------
def explain_all(site: Site, key: bytes, root: Path) -> list[tuple[str, Reads]]:
    """Every operation once more on an index whose connections report each plan (the index's own statements)."""
    recorder = PlanRecorder("index_clips")
    index = PostgresIndex(recorder.pool(site.url), lambda: key)
    builder = SiteBuilder(index, site.builder.devices, SiteStore(root / "explain-site", lambda: key),
                          clock=site.builder.clock)
    explain_site = Site(site.scale, site.url, index, site.writer, builder, site.store, site.next_sequence)
    cam = site.scale.cameras[0].name
    work = [*operations(explain_site),
            ("incremental rebuild: the day page (render_day)", lambda: builder.render_day(cam, site.today)),
            ("incremental rebuild: overview + live pages (render_overview)", builder.render_overview)]
    builder.render_overview()   # its newest-day summaries are cached after the first render, as in the runtime
    found = []
    for label, call in work:
        recorder.take()
        call()
        found.append((label, recorder.take()))
    index.close()
    return found


def disk_size(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_table_size('index_clips'), pg_indexes_size('index_clips'), "
                           "pg_total_relation_size('index_devices'), count(*) FROM index_clips").fetchone()
        sizes = dict(conn.execute("SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                                  "WHERE relname = 'index_clips'").fetchall())
    assert row is not None
    return {"table (heap + TOAST)": row[0], "indexes": row[1], "index_devices": row[2], "rows": row[3], **sizes}


# -- the run -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, server: PostgresServer, tmp: Path) -> list[str]:
    key = os.urandom(32)
    cameras = [Camera(f"Camera {n:02d}") for n in range(1, args.cameras + 1)]
    scales = [Scale(f"{args.small:,} clips", args.small, cameras, args.per_day, args.today),
              Scale(f"{args.clips:,} clips", args.clips, cameras, args.per_day, args.today)]
    now = TODAY + timedelta(hours=20)
    sites = [new_site(server, s, tmp / f"site-{i}", key, now) for i, s in enumerate(scales)]
    small, large = sites
    out = [f"{len(cameras)} cameras; {small.scale.label}: {min(args.today, small.scale.per_camera)} clips each "
           f"today; {large.scale.label}: the same day plus {len(large.scale.plan()) - 1} days of history at "
           f"{args.per_day}/day; 10 fragments a clip. PostgreSQL 15, fsync {'on' if args.fsync else 'off'}; "
           f"median of {args.repeats}, sizes alternating.", ""]

    out += ["## Loading (import_day: COPY, rows sealed by the index)", "",
            "| size | seconds | clips/s |", "|---|---:|---:|"]
    out += [f"| {s.scale.label} | {s.load_s:,.1f} | {s.scale.clips / s.load_s:,.0f} |" for s in sites]

    progress("full rebuild at the small size")
    small_full, _, small_pages = full_rebuild(small, float("inf"))
    progress("full rebuild at the large size (or its estimate)")
    large_full, measured, large_pages = full_rebuild(large, args.full_rebuild_limit)

    progress("incremental rebuilds")
    for site in sites:
        site.add_clip()               # warm-up: templates compiled, the overview's summaries cached
    samples: list[list[tuple[float, float, float, float]]] = [[], []]
    rounds = max(21, 3 * args.repeats)      # cheap, and page writes (fsync) are noisy: more samples
    for r in range(rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):     # ABBA: neither size always follows the other
            samples[i].append(sites[i].add_clip())
    parts = [[render_parts(s) for _ in range(args.repeats)] for s in sites]

    out += ["", "## Incremental rebuild after one new clip, written by another runtime", "",
            "upsert_clip (writer) → NOTIFY heard → SiteBuilder.on_index_change → SiteBuilder.flush (the day page, "
            f"the overview, the live pages, sealed into a SiteStore). Median of {rounds}; render_day and "
            f"render_overview timed alone, median of {args.repeats}.", "",
            "| size | upsert ms | NOTIFY heard ms | **flush (rebuild) ms** | of which page writes (seal, fsync) ms | "
            "flush less page writes ms | render_day ms | render_overview ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    flush, reads = [], []
    for site, s, p in zip(sites, samples, parts, strict=True):
        flush.append(median_ms([c for _, _, c, _ in s]))
        reads.append(median_ms([c - w for _, _, c, w in s]))
        out.append(f"| {site.scale.label} | {median_ms([a for a, _, _, _ in s]):.1f} | "
                   f"{median_ms([b for _, b, _, _ in s]):.1f} | **{flush[-1]:.1f}** | "
                   f"{median_ms([w for _, _, _, w in s]):.1f} | {reads[-1]:.1f} | "
                   f"{median_ms([a for a, _ in p]):.1f} | {median_ms([b for _, b in p]):.1f} |")
    ratio = flush[1] / flush[0]
    out += ["", f"incremental rebuild {large.scale.label} / {small.scale.label} = **{ratio:.2f}** "
            f"(goal ≤ 1.5: {'met' if ratio <= 1.5 else '**missed**'}); without the page writes "
            f"{reads[1] / reads[0]:.2f}"]

    out += ["", "## Full rebuild at start (rebuild_all)", "",
            "| size | day pages | seconds | per day page ms |", "|---|---:|---:|---:|",
            f"| {small.scale.label} | {small_pages:,} | {small_full:,.2f} | {small_full / small_pages * 1000:.0f} |",
            f"| {large.scale.label} | {large_pages:,} | {large_full:,.1f}"
            f"{'' if measured else ' (**estimated** from 20 day pages, not run)'} | "
            f"{large_full / large_pages * 1000:.0f} |"]

    progress("index queries")
    out += ["", "## Index calls", "", f"| call | {small.scale.label} ms | {large.scale.label} ms | ratio |",
            "|---|---:|---:|---:|"]
    for (label, _), i in zip(operations(small), range(len(operations(small))), strict=True):
        a, b = alternate(sites, args.repeats, lambda s, i=i: operations(s)[i][1]())
        out.append(f"| {label} | {a * 1000:.2f} | {b * 1000:.2f} | {b / a:.2f} |")

    progress(f"plans at {large.scale.label} (auto_explain)")
    out += ["", f"## What each call reads at {large.scale.label} (auto_explain, the index's own statements)", "",
            "| call | statements | rows read from index_clips | indexes used | seq scans of index_clips |",
            "|---|---:|---:|---|---:|"]
    for label, reads in explain_all(large, key, tmp):
        out.append(f"| {label} | {reads.statements} | {reads.rows:,} | {', '.join(sorted(reads.indexes)) or '–'} | "
                   f"{reads.seq_scans} |")

    sizes = disk_size(large.url)
    total = sizes["table (heap + TOAST)"] + sizes["indexes"] + sizes["index_devices"]
    out += ["", f"## On disk at {large.scale.label}", "",
            "| part | MB | bytes a clip |", "|---|---:|---:|"]
    for name, value in sizes.items():
        if name != "rows":
            out.append(f"| {name} | {value / 1048576:,.1f} | {value / sizes['rows']:,.0f} |")
    out.append(f"| **total** | {total / 1048576:,.1f} | {total / sizes['rows']:,.0f} |")
    for site in sites:
        site.index.close()
        site.writer.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=1_000_000, help="the large size (default 1,000,000)")
    parser.add_argument("--small", type=int, default=1_000, help="the small size (default 1,000)")
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=350, help="clips a camera records a day in the history")
    parser.add_argument("--today", type=int, default=50, help="clips each camera has today, in both sizes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--full-rebuild-limit", type=float, default=300.0,
                        help="run rebuild_all at the large size only if estimated under this many seconds")
    parser.add_argument("--fsync", action="store_true", help="run PostgreSQL with fsync on")
    args = parser.parse_args()
    if args.small >= args.clips or args.small < args.cameras:
        parser.error("--small must be at least --cameras and below --clips")
    started = time.perf_counter()
    server = start_for_bench(fsync=args.fsync)
    root = Path(tempfile.mkdtemp(prefix="bench-million-"))
    try:
        lines = run(args, server, root)
    finally:
        stop_for_bench(server)
        shutil.rmtree(root, ignore_errors=True)
    print("\n".join(lines))
    print(f"\n(whole run {time.perf_counter() - started:,.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
