"""Benchmark the agent on IP cameras: CPU per camera for passthrough, the re-encode path and plain ffmpeg copy.

    python bench/bench_cameras.py [--seconds 40] [--cameras 12] [--skip-uhd] [--skip-transcode]

One run, one machine, same-run baselines (these machines are shared and noisy, so ratios are what count):

* a real RTSP camera: GStreamer's RTSP server (tests/rtsp_camera) serving a 1920x1080 25 fps H.264 stream at
  about 4 Mbit/s with a keyframe every 2 s, its 640x360 sub-stream, and a 3840x2160 H.265 stream; the files
  are made once and cached in ~/.cache/cryospy/bench-media (4K takes a few minutes to render on two cores);
* the real server: MinIO and the runtime (``cryospy serve``) in a child process; their CPU is not counted;
* the real agent: ``cryospy agent --config FILE`` in a child process, recording 10 s clips, sealing,
  spooling and uploading them through presigned slots. Counted: the agent's whole process tree (the Python
  process and every ffmpeg it runs), read from /proc over a window that starts after a warm-up.

Rows: plain ``ffmpeg -rtsp_transport tcp -i URL -c copy`` into 10 s fragmented-MP4 segments (the floor: what
copying costs with nothing else), the agent in passthrough with motion on the sub-stream, the agent in
passthrough with motion on the main stream's keyframes (no sub-stream), the agent re-encoding (decode +
libx264, the old path), the 4K H.265 camera in passthrough, and N cameras in one agent. Goals (issue 11):
<= 0.08 core per camera including sub-stream motion, sealing and upload; >= 12 cameras in one core;
4K H.265 <= 0.10 core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.rtsp_camera: the camera we measure against

import ffmpeg
from bench_agent import start_server
from bench_motion import cpu_name

from cryospy.cli.admin_client import AdminClient
from cryospy.cli.devices import create_device
from cryospy.common.ffmpeg_tool import ffmpeg_exe
from cryospy.infra.deployment import Deployment
from tests.rtsp_camera.fixture import RtspCamera
from tests.rtsp_camera.media import make_bench_media

TICKS = os.sysconf("SC_CLK_TCK")
CLIP_SECONDS = 10
GOAL_PER_CAMERA, GOAL_CAMERAS, GOAL_UHD = 0.08, 12, 0.10


def copy_baseline_command(url: str, out_dir: Path) -> list[str]:
    """Plain ``ffmpeg -c copy`` of the camera's video into fragmented-MP4 segments: the floor of the table."""
    source = ffmpeg.input(url, rtsp_transport="tcp")
    return ffmpeg.output(source["v:0"], str(out_dir / "seg-%06d.mp4"), c="copy", f="segment",
                         segment_time=CLIP_SECONDS, segment_format="mp4",
                         segment_format_options="movflags=+frag_keyframe+empty_moov+default_base_moof",
                         reset_timestamps=1).global_args("-nostdin", "-loglevel", "error").compile(cmd=ffmpeg_exe())


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, including children they already reaped."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        stats[int(entry)] = fields
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in family:
                family.add(child)
                frontier.append(child)
    total = 0
    for member in family:
        fields = stats.get(member)
        if fields:   # utime, stime, cutime, cstime are fields 14-17 of stat; here offset by the 2 skipped
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / TICKS


@dataclass(frozen=True)
class Row:
    what: str
    cameras: int
    cpu_s: float
    wall_s: float
    clips: int

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s

    @property
    def per_camera(self) -> float:
        return self.cores / self.cameras


def measure(command: list[str], *, warmup: float, seconds: float, log: Path,
            clips: Callable[[], int] | None = None) -> tuple[float, float, int]:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),  # noqa: SIM115
                            start_new_session=True)
    try:
        time.sleep(warmup)
        if proc.poll() is not None:
            raise SystemExit(f"bench_cameras: {command[:3]} exited early; see {log}")
        c0, t0, n0 = tree_cpu(proc.pid), time.monotonic(), clips() if clips else 0
        time.sleep(seconds)
        c1, t1, n1 = tree_cpu(proc.pid), time.monotonic(), clips() if clips else 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return c1 - c0, t1 - t0, n1 - n0


def enrol_cameras(dep: Deployment, work: Path, name: str, cameras: list[dict[str, str]],
                  settings: dict[str, object]) -> tuple[Path, list[str]]:
    path = work / f"{name}.json"
    ids = []
    for i, camera in enumerate(cameras):
        device_id = f"{name}-{i}"
        create_device(dep, device_id, None, {"clip_seconds": CLIP_SECONDS, "temp_dir": str(work),
                                              "spool_dir": str(work / "spool" / device_id), **camera},
                      agent_generates_key=True, add_to=path)
        AdminClient(dep.runtime_url, dep.admin_token).call(
            "PATCH", f"/v1/admin/devices/{quote(device_id)}/settings", settings)
        ids.append(device_id)
    return path, ids


def uploaded_clips(dep: Deployment, ids: list[str]) -> int:
    """Clips of these cameras the runtime has indexed (so they were sealed, uploaded and verified)."""
    client = AdminClient(dep.runtime_url, dep.admin_token)
    return sum(len(client.call("GET", f"/v1/admin/clips?device={quote(device_id)}&limit=500")["clips"])
               for device_id in ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured window per row")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before each window")
    parser.add_argument("--cameras", type=int, default=GOAL_CAMERAS, help="cameras in one agent for the last row")
    parser.add_argument("--skip-uhd", action="store_true", help="leave out the 4K H.265 camera (slow to render)")
    parser.add_argument("--skip-transcode", action="store_true", help="leave out the re-encode row (1+ core)")
    args = parser.parse_args()

    cache = Path(os.environ.get("CRYOSPY_CACHE_DIR") or Path.home() / ".cache" / "cryospy") / "bench-media"
    print(f"Camera media in {cache} (made once) ...", flush=True)
    media = make_bench_media(cache, uhd_seconds=0 if args.skip_uhd else 10)
    agent_cmd = [sys.executable, "-m", "cryospy", "agent", "--config"]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="cryospy-bench-cameras-") as tmp:
        work = Path(tmp)
        camera = RtspCamera(media, work / "rtsp.log").start()
        print("Starting MinIO and the runtime (cryospy serve, not counted) ...", flush=True)
        dep, server = start_server(work)
        try:
            def row(what: str, command: list[str], cameras: int, ids: list[str] | None = None) -> None:
                print(f"  {what} ...", flush=True)
                counter = (lambda: uploaded_clips(dep, ids)) if ids else None
                cpu, wall, clips = measure(command, warmup=args.warmup, seconds=args.seconds,
                                           log=work / f"{len(rows)}.log", clips=counter)
                rows.append(Row(what, cameras, cpu, wall, clips))

            main_url, sub_url = camera.url("main"), camera.url("sub")
            segments = work / "copy"
            segments.mkdir()
            row("plain ffmpeg -c copy (baseline)", copy_baseline_command(main_url, segments), 1)
            config, ids = enrol_cameras(dep, work, "sub", [{"camera_device": main_url, "detect_device": sub_url}], {})
            row("agent, passthrough, motion on the 640x360 sub-stream", [*agent_cmd, str(config)], 1, ids)
            config, ids = enrol_cameras(dep, work, "key", [{"camera_device": main_url}], {})
            row("agent, passthrough, motion on main-stream keyframes", [*agent_cmd, str(config)], 1, ids)
            if not args.skip_transcode:
                config, ids = enrol_cameras(dep, work, "enc", [{"camera_device": main_url}],
                                            {"record_mode": "transcode", "capture_frame_rate": 25})
                row("agent, re-encode (decode + libx264, the old path)", [*agent_cmd, str(config)], 1, ids)
            if not args.skip_uhd:
                config, ids = enrol_cameras(dep, work, "uhd", [{"camera_device": camera.url("main_uhd")}], {})
                row("agent, passthrough, 3840x2160 H.265 (keyframe motion)", [*agent_cmd, str(config)], 1, ids)
            config, ids = enrol_cameras(dep, work, "nvr", [{"camera_device": main_url, "detect_device": sub_url}
                                                           for _ in range(args.cameras)], {})
            row(f"agent, {args.cameras} cameras in one process (passthrough + sub-stream)",
                [*agent_cmd, str(config)], args.cameras, ids)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(60)
            camera.close()

    base = rows[0].per_camera
    print()
    print(f"Agent CPU per IP camera: 1920x1080 25 fps H.264 ~4 Mbit/s (GOP 2 s) + 640x360 sub-stream, 10 s clips, "
          f"sealed and uploaded to a real MinIO through the real runtime (server CPU not counted); "
          f"{args.seconds:g} s windows after {args.warmup:g} s warm-up. {platform.machine()} ({cpu_name()}), "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print()
    print("| what | cameras | CPU s | wall s | cores | cores per camera | vs plain ffmpeg copy | clips indexed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.what} | {r.cameras} | {r.cpu_s:.2f} | {r.wall_s:.1f} | {r.cores:.3f} | {r.per_camera:.4f} | "
              f"{r.per_camera / base:.1f}x | {r.clips if r.clips else '-'} |")
    print()
    sub = next(r for r in rows if "sub-stream" in r.what and r.cameras == 1)
    many = rows[-1]
    fit = int(1.0 / many.per_camera) if many.per_camera else 0
    print(f"Goal <= {GOAL_PER_CAMERA} core per camera with sub-stream motion: {sub.per_camera:.3f} "
          f"({'met' if sub.per_camera <= GOAL_PER_CAMERA else 'NOT met'}).")
    print(f"{many.cameras} cameras in one agent: {many.cores:.3f} cores in total; at that rate one core holds "
          f"{fit} cameras (goal >= {GOAL_CAMERAS}: {'met' if fit >= GOAL_CAMERAS else 'NOT met'}).")
    uhd = next((r for r in rows if "3840" in r.what), None)
    if uhd:
        print(f"4K H.265 camera: {uhd.per_camera:.3f} core (goal <= {GOAL_UHD}: "
              f"{'met' if uhd.per_camera <= GOAL_UHD else 'NOT met'}).")
    print(json.dumps({r.what: round(r.per_camera, 4) for r in rows}))


if __name__ == "__main__":
    main()
