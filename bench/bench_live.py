"""Benchmark live view: glass-to-glass latency in Chromium, and what a watched camera costs the agent and runtime.

    python bench/bench_live.py [--seconds 60] [--idle-seconds 30] [--width 1280 --height 720 --fps 15]

One run, one machine, loopback, in this order:

1. **Nobody watches** (``--idle-seconds``): the agent records; its live threads' CPU (``live-watch``: the
   long-poll, ``live-parts``: the directory listing that dates new clip files) and the runtime's CPU are the
   idle baseline, and the bucket must hold no part afterwards.
2. **Live parts** (``--seconds``): Chromium opens the camera's live page, which plays live parts; every 0.5 s
   the page's own figure is read: now minus the capture time of the frame on screen (hls.js ``playingDate``,
   from each part's sealed capture time). Meanwhile the agent's live threads' CPU (read per thread from
   ``/proc/self/task``) and the runtime process's own CPU (``/proc/<pid>/stat``, without MinIO) are counted.
3. **Same-run baseline, today's clip-based live view** (``--seconds``): the same page with the live-status
   answer replaced by "no parts" (Playwright routing), so it falls back to the sliding playlist of indexed
   clips, and the same figure is read. The camera is not told anyone watches, so no parts are made.

The agent (real :class:`~cryospy.edge_agent.agent.Agent`, ``synthetic:WxH``) runs in this process; MinIO and
the runtime run in a ``cryospy serve`` child. "Extra agent CPU per watched camera" is what the live threads
spent while watched (the fragments are cut from the clip ffmpeg already writes, so the encoder costs
nothing extra) plus, for comparison, the whole agent process (capture, motion, piping frames, sealing clips,
all threads; ffmpeg children excluded) watched minus idle, which is noisier.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_agent import PASSPHRASE, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.live_support: the page's latency reader

from cryospy.cli.devices import create_device
from cryospy.common.liveparts import LIVE_PREFIX
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.config import load_config
from cryospy.functions.services import S3Identity
from cryospy.web.builder import live_page
from tests.live_support import measure_latency

CHROMIUM = "/usr/bin/chromium"
GOAL_P95_S, GOAL_AGENT_CPU = 3.0, 0.02
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    """CPU of the agent's live threads, the whole agent process and the runtime over a window."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.live = [t.native_id for t in threading.enumerate() if t.name in ("live-watch", "live-parts")]
        assert len(self.live) == 2, "the agent's live threads are not running"

    def read(self) -> tuple[float, float, float, float]:
        return (time.monotonic(), sum(thread_cpu(t) for t in self.live if t is not None), self_cpu(),
                process_cpu(self.server_pid))

    @staticmethod
    def rates(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
        seconds = b[0] - a[0]
        return (b[1] - a[1]) / seconds, (b[2] - a[2]) / seconds, (b[3] - a[3]) / seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def open_live(browser, base: str, device: str, *, force_fallback: bool):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    if force_fallback:
        page.route(re.compile(r".*/media/live-status\.json.*"), lambda route: route.fulfill(
            status=200, content_type="application/json", body='{"parts": 0}'))
    page.goto(base + "/login")
    page.fill("input[name=passphrase]", PASSPHRASE)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(f"{base}/{live_page(device)}")
    mode = "clips" if force_fallback else "parts"
    page.wait_for_selector(f"video[data-mode='{mode}'][data-behind-ms]", state="attached", timeout=60000)
    time.sleep(3)   # let the player settle at its live position
    return context, page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="latency sampling per mode")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="the nobody-watches window")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="cryospy-bench-live-") as tmp:
        work = Path(tmp)
        print("Starting MinIO and the runtime (cryospy serve) ...", flush=True)
        dep, server = start_server(work)
        config_path = work / "agent.json"
        create_device(dep, "live-cam", config_path, {
            "camera_device": f"synthetic:{args.width}x{args.height}", "fps": args.fps,
            "clip_seconds": args.clip_seconds, "keyframe_seconds": 1, "temp_dir": "/dev/shm"
            if Path("/dev/shm").is_dir() else str(work), "spool_dir": str(work / "spool")})
        agent = Agent.build(load_config(config_path))
        thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, name="agent")
        thread.start()
        s3 = S3Identity(dep.minio_url, dep.minio_root_user, dep.minio_root_password, dep.region).client()

        def parts_in_bucket() -> int:
            return s3.list_objects_v2(Bucket=dep.bucket, Prefix=LIVE_PREFIX).get("KeyCount", 0)

        try:
            time.sleep(2)
            meter = Meter(server.pid)
            print(f"Nobody watching for {args.idle_seconds:g} s ...", flush=True)
            a = meter.read()
            time.sleep(args.idle_seconds)
            idle = Meter.rates(a, meter.read())
            idle_parts, idle_sent = parts_in_bucket(), agent.live_parts.sent
            # the clip-based baseline needs a few indexed clips
            deadline = time.monotonic() + 6 * args.clip_seconds + 60
            while agent.uploader.stats.uploaded < 3 and time.monotonic() < deadline:
                time.sleep(1)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                    "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
                print(f"Live parts in Chromium for {args.seconds:g} s ...", flush=True)
                context, page = open_live(browser, dep.runtime_url, "live-cam", force_fallback=False)
                sent0, a = agent.live_parts.sent, meter.read()
                live = measure_latency(page, args.seconds)
                watched = Meter.rates(a, meter.read())
                sent = agent.live_parts.sent - sent0
                context.close()
                deadline = time.monotonic() + 30
                while agent.live_watch.watched.is_set() and time.monotonic() < deadline:
                    time.sleep(0.5)
                print(f"Clip-based live view (today's) in Chromium for {args.seconds:g} s ...", flush=True)
                context, page = open_live(browser, dep.runtime_url, "live-cam", force_fallback=True)
                sent_before = agent.live_parts.sent
                baseline = measure_latency(page, args.seconds)
                baseline_sent = agent.live_parts.sent - sent_before
                context.close()
                browser.close()
        finally:
            agent.stop.set()
            thread.join(120)
            server.send_signal(signal.SIGINT)
            server.wait(60)

    print()
    print(f"Live view, one {args.width}x{args.height} @ {args.fps:g} fps synthetic camera (1 s fragments, "
          f"{args.clip_seconds:g} s clips), agent in this process, runtime + MinIO in a child, headless "
          f"Chromium on loopback. {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print()
    print("| glass-to-glass (now − capture time of the frame on screen) | samples | p50 | p95 | max |")
    print("|---|---:|---:|---:|---:|")
    for name, values in ((f"**live parts** (goal p95 <= {GOAL_P95_S:g} s: "
                          f"{'met' if live and pct(live, 0.95) <= GOAL_P95_S else 'NOT met'})", live),
                         ("clip-based live view (baseline, same run)", baseline)):
        if values:
            print(f"| {name} | {len(values)} | {statistics.median(values):.2f} s | {pct(values, 0.95):.2f} s "
                  f"| {max(values):.2f} s |")
        else:
            print(f"| {name} | 0 | – | – | – |")
    print()
    print("| CPU, cores (CPU s per wall s) | nobody watching | one viewer | extra per watched camera |")
    print("|---|---:|---:|---:|")
    print(f"| agent live threads (long-poll, tail, seal, upload) | {idle[0]:.4f} | {watched[0]:.4f} | "
          f"**{watched[0] - idle[0]:.4f}** (goal <= {GOAL_AGENT_CPU}: "
          f"{'met' if watched[0] - idle[0] <= GOAL_AGENT_CPU else 'NOT met'}) |")
    print(f"| whole agent process, ffmpeg excluded (noisier) | {idle[1]:.3f} | {watched[1]:.3f} | "
          f"{watched[1] - idle[1]:+.3f} |")
    print(f"| runtime process (check, playlist, decrypt, serve; MinIO excluded) | {idle[2]:.4f} | {watched[2]:.4f} | "
          f"{watched[2] - idle[2]:+.4f} |")
    print()
    print(f"Parts: {idle_sent} sent and {idle_parts} in the bucket after {args.idle_seconds:g} s with nobody watching; "
          f"{sent} sent in {args.seconds:g} s watched; {baseline_sent} during the clip-based baseline.")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
