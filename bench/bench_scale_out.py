"""Sustained ingest on one runtime and on two (issue 18's benchmark), on the embedded store and on PostgreSQL.

    python bench/bench_scale_out.py [--cameras 8] [--clips 200] [--rounds 3] [--pg-fsync on]

Three configurations in one run, each on a fresh deployment with a MinIO of its own (the same MinIO binary),
the same clip and the same cameras' load:

  (a) one runtime on the embedded store (TinyDB index, SQLite queue): the baseline;
  (b) one runtime on PostgreSQL (index, queue, registry, alert limits in one database);
  (c) two runtimes on that PostgreSQL and one MinIO (``cryospy runtime add``), half of the cameras talking
      to each, as a balancer would send them.

Every runtime is a real ``cryospy serve`` runtime in a child process of its own with its normal worker count
(RuntimeOptions' defaults, as ``cryospy serve``: 2 workers, 8 HTTP threads; the reconciler is held off, as
in the tests, so that it does not list the bucket mid-run). The cameras run in this process, one thread each, as the
agent does: upload slot from the API, PUT to MinIO with the presigned URL, confirm to the API. Clips are
sealed before the clock starts (that is the cameras' work, not the server's). Before the timed burst each
camera uploads one clip and waits until it is indexed (registration, connections and caches warm).

Measured for the burst, from the first slot request to the last clip indexed with its thumbnail (the last
ingest job done, from the queue's own time stamps; then every thumbnail is checked in MinIO):

* clips/s (wall time);
* CPU seconds (user + system, from /proc/<pid>/stat, children included) of the CryoSpy runtimes, of MinIO
  and of PostgreSQL (the postmaster and every backend), each per clip, and of this process (the cameras);
* clips per CPU-second of the runtimes, and of the whole server side (runtimes + MinIO + PostgreSQL).

The machine is shared and has few cores, so the verdicts are ratios within the run, of the medians of
``--rounds`` rounds of (a), (b), (c) in turn (other work on the machine moves single figures a lot). Two
runtimes cannot be 1.6x one in wall time when one runtime already keeps the cores busy, so the scale-out
verdict is given twice: the wall-time ratio, and the CPU-normalised one: 2 x (clips per runtime CPU-second
with two runtimes) / (the same with one), the speed-up two runtimes would reach if each had as much CPU as
the one runtime used (the same with whole-server CPU, which counts the shared MinIO and PostgreSQL, is
printed next to it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.*: the fixtures' servers and cameras

import psycopg
from bench_ingest import make_clip

from cryospy.common.objectkeys import thumbnail_key
from cryospy.edge_agent.api_client import ApiClient
from cryospy.infra.bootstrap import root_identity
from cryospy.infra.deployment import Deployment, load
from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime import RuntimeOptions
from cryospy.infra.runtime_instances import add_runtime
from tests.conftest import PASSPHRASE, new_deployment
from tests.postgres_server import PostgresServer, make_server, postgres_missing_message
from tests.support import FakeCamera

HANDLER = "on_clip_created"
TICKS = os.sysconf("SC_CLK_TCK")
OPTIONS = RuntimeOptions(reconcile_seconds=3600)   # the serve defaults otherwise: workers, threads


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- CPU accounting -------------------------------------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        # after the name: state, ppid, ..., utime (14th field of stat), stime, cutime, cstime
        table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / TICKS)
    return table


def tree_cpu(roots: list[int], table: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of ``roots`` and every live descendant (an exited one is in its parent's cutime/cstime)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, list(roots)
    while todo:
        pid = todo.pop()
        total += table.get(pid, (0, 0.0))[1]
        todo.extend(children.get(pid, ()))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8]) / TICKS
    return total - (values[3] + values[4]) / TICKS, total


@dataclass
class CpuSnapshot:
    runtimes: float
    minio: float
    postgres: float
    cameras: float
    busy: float
    total: float


def snapshot(runtime_pids: list[int], minio_pid: int, postgres_pid: int | None) -> CpuSnapshot:
    table = _proc_table()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, total = machine_busy()
    return CpuSnapshot(tree_cpu(runtime_pids, table), tree_cpu([minio_pid], table),
                       tree_cpu([postgres_pid], table) if postgres_pid else 0.0,
                       usage.ru_utime + usage.ru_stime, busy, total)


# -- the runtimes, in child processes -------------------------------------------------------------------------

def _run_runtime(data_dir: str, ready: object) -> None:
    from cryospy.infra.runtime import Runtime

    runtime = Runtime(load(Path(data_dir)), OPTIONS)
    runtime.unlock(PASSPHRASE)
    runtime.start()
    ready.set()   # type: ignore[attr-defined]
    threading.Event().wait()


class RuntimeProcess:
    def __init__(self, dep: Deployment) -> None:
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.proc = context.Process(target=_run_runtime, args=(str(dep.data_dir), ready), daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 120
        while not ready.wait(0.2):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the runtime in {dep.data_dir} did not start")

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.is_alive():
            os.kill(self.pid, signal.SIGTERM)
            self.proc.join(10)
            if self.proc.is_alive():
                os.kill(self.pid, signal.SIGKILL)
                self.proc.join()


# -- what is done: the ingest jobs in the queue ---------------------------------------------------------------

class Queue:
    """Reads the ingest jobs straight from the queue's table (SQLite file or PostgreSQL), cheaply enough to
    poll: which clips are done, when the last was, and whether anything failed."""

    def __init__(self, dep: Deployment, database_url: str | None):
        self.url, self.path = database_url, dep.path("runtime", "jobs.sqlite")

    def _rows(self, sql: str) -> list[tuple]:
        if self.url:
            with psycopg.connect(self.url) as conn:
                return conn.execute(sql.replace("?", "%s"), (HANDLER,)).fetchall()
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
            return db.execute(sql, (HANDLER,)).fetchall()

    def done(self) -> dict[str, float]:
        """object key -> when its first ingest job finished (seconds since the epoch)."""
        out: dict[str, float] = {}
        for event, updated in self._rows("SELECT event, updated FROM jobs WHERE handler = ? AND state = 'done'"):
            key = json.loads(event)["key"]
            out[key] = min(updated, out.get(key, updated))
        return out

    def failed(self) -> int:
        return len(self._rows("SELECT id FROM jobs WHERE handler = ? AND state = 'dead'"))


def wait_done(queue: Queue, keys: set[str], timeout: float = 900) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        done = queue.done()
        if keys <= done.keys():
            return done
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(keys - done.keys())} of {len(keys)} clips not indexed after {timeout:.0f} s")
        time.sleep(0.2)


# -- one configuration ----------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    runtimes: int
    clips: int
    seconds: float
    cpu: CpuSnapshot            # the burst's CPU seconds (differences)
    load: tuple[float, float, float]

    @property
    def rate(self) -> float:
        return self.clips / self.seconds

    @property
    def server_cpu(self) -> float:
        return self.cpu.runtimes + self.cpu.minio + self.cpu.postgres

    @property
    def per_runtime_cpu_s(self) -> float:
        return self.clips / self.cpu.runtimes

    @property
    def per_server_cpu_s(self) -> float:
        return self.clips / self.server_cpu

    @property
    def machine_share(self) -> float:
        """How busy the machine's cores were during the burst (every process, other sessions' too)."""
        return self.cpu.busy / self.cpu.total


def upload_all(cameras: list[FakeCamera], sealed: list[list[tuple[str, bytes, str, int]]], spool: Path) -> None:
    """Each camera in a thread of its own: slot, PUT, confirm, clip after clip (as the agent's uploader)."""
    errors: list[BaseException] = []

    def run(camera: FakeCamera, clips: list[tuple[str, bytes, str, int]]) -> None:
        try:
            for key, data, stamp, sequence in clips:
                path = spool / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.cse"
                slot = camera.client.request_slot({"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                                   "captured_at": stamp, "sequence": sequence})
                assert slot.key == key
                assert camera.client.put(slot, path) == 200
                camera.client.confirm(key)
        except BaseException as exc:   # reported below, after every camera stopped
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c, s)) for c, s in zip(cameras, sealed, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} camera(s) failed; the first: {errors[0]!r}")


def run_configuration(name: str, work: Path, minio_binary: Path, clip: bytes, pg: PostgresServer | None,
                      runtimes: int, cameras_n: int, clips_n: int) -> Result:
    say(f"{name}: setting up")
    dep = new_deployment(work / "runtime-a")
    url = None
    if pg is not None:
        url = pg.fresh_url()
        (dep.data_dir / "server.json").write_text(json.dumps({"database_url": url}))
    deps = [dep]
    for n in range(1, runtimes):
        deps.append(add_runtime(load(dep.data_dir), work / f"runtime-{chr(ord('a') + n)}", free_port()))
    dep = load(dep.data_dir)
    spool = work / "spool"
    spool.mkdir()
    with MinioServer(dep, binary=minio_binary) as minio:
        procs: list[RuntimeProcess] = []
        try:
            procs = [RuntimeProcess(d) for d in deps]
            cameras = [FakeCamera(dep, f"cam {i}", work / f"cam{i}") for i in range(cameras_n)]
            for i, camera in enumerate(cameras):   # spread over the runtimes, as a balancer would
                camera.client = ApiClient(replace(camera.config, server_url=deps[i % runtimes].runtime_url))
            queue = Queue(dep, url)
            warm = [camera.upload(clip) for camera in cameras]
            wait_done(queue, set(warm))
            sealed: list[list[tuple[str, bytes, str, int]]] = [[] for _ in cameras]
            for n in range(clips_n):
                camera = cameras[n % cameras_n]
                key, data, stamp = camera.sealed(clip)
                (spool / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.cse").write_bytes(data)
                sealed[n % cameras_n].append((key, data, stamp, camera.sequence - 1))
            keys = {k for s in sealed for k, *_ in s}
            postgres_pid = int((pg.data / "postmaster.pid").read_text().split()[0]) if pg else None
            pids = [p.pid for p in procs]
            assert minio.proc is not None
            load_avg = os.getloadavg()
            say(f"{name}: burst of {clips_n} clips from {cameras_n} cameras (load {load_avg[0]:.1f})")
            before = snapshot(pids, minio.proc.pid, postgres_pid)
            t0 = time.time()
            upload_all(cameras, sealed, spool)
            done = wait_done(queue, keys)
            after = snapshot(pids, minio.proc.pid, postgres_pid)
            seconds = max(done[k] for k in keys) - t0
            s3 = root_identity(dep).client()
            thumbs = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=dep.bucket, Prefix="derived/thumbs/") for o in page.get("Contents", [])}
            missing = {thumbnail_key(k) for k in keys} - thumbs
            if missing or queue.failed():
                raise RuntimeError(f"{name}: {len(missing)} thumbnails missing, {queue.failed()} dead jobs")
        finally:
            for p in procs:
                p.stop()
    cpu = CpuSnapshot(*(getattr(after, f) - getattr(before, f) for f in CpuSnapshot.__dataclass_fields__))
    result = Result(name, runtimes, clips_n, seconds, cpu, load_avg)
    say(f"{name}: {result.rate:.2f} clips/s, {cpu.runtimes / clips_n * 1000:.0f} ms runtime CPU per clip")
    return result


# -- the table ------------------------------------------------------------------------------------------------

def print_tables(rounds: list[list[Result]], clip_mb: float, args: argparse.Namespace) -> None:
    cores = os.cpu_count()
    print(f"\n{args.clips} clips ({clip_mb:.1f} MB each: 10 s 1280x720 15 fps) from {args.cameras} cameras at once; "
          f"{cores} cores; each runtime {OPTIONS.workers} workers, {OPTIONS.threads} HTTP threads; "
          f"PostgreSQL 15 fsync={args.pg_fsync}\n")
    print("| round | configuration | clips/s | runtime CPU ms/clip | MinIO ms/clip | PostgreSQL ms/clip "
          "| cameras ms/clip | clips per runtime CPU-s | clips per server CPU-s | machine busy | load (1 min) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, results in enumerate(rounds, 1):
        for r in results:
            ms = [f"{s / r.clips * 1000:.0f}" for s in (r.cpu.runtimes, r.cpu.minio, r.cpu.postgres, r.cpu.cameras)]
            print(f"| {n} | {r.name} | {r.rate:.2f} | {' | '.join(ms)} "
                  f"| {r.per_runtime_cpu_s:.2f} | {r.per_server_cpu_s:.2f} "
                  f"| {100 * r.machine_share:.0f} % | {r.load[0]:.1f} |")

    def median(name: str, value) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(value(r) for results in rounds for r in results if r.name == name)

    a, b, c = (r.name for r in rounds[0])
    rate = lambda r: r.rate  # noqa: E731
    rt_eff = lambda r: r.per_runtime_cpu_s  # noqa: E731
    sys_eff = lambda r: r.per_server_cpu_s  # noqa: E731
    pg_wall = median(b, rate) / median(a, rate)
    pg_cpu = median(b, rt_eff) / median(a, rt_eff)
    two_wall = median(c, rate) / median(b, rate)
    two_cpu = 2 * median(c, rt_eff) / median(b, rt_eff)
    two_sys = 2 * median(c, sys_eff) / median(b, sys_eff)
    label = "median of rounds" if len(rounds) > 1 else "this run"
    print(f"\n| ratio ({label}) | value | goal |")
    print("|---|---:|---|")
    print(f"| (b) PostgreSQL / (a) embedded, one runtime, clips/s | {pg_wall:.2f} | >= 0.8 |")
    print(f"| (b) / (a), clips per runtime CPU-second | {pg_cpu:.2f} | |")
    print(f"| (b) / (a), clips per server CPU-second | {median(b, sys_eff) / median(a, sys_eff):.2f} | |")
    print(f"| (c) two runtimes / (b) one, clips/s (wall time, {cores} cores) | {two_wall:.2f} "
          "| >= 1.6 where CPU allows |")
    print(f"| (c) / (b), CPU-normalised: 2 x clips per runtime CPU-s | {two_cpu:.2f} | >= 1.6 |")
    print(f"| (c) / (b), CPU-normalised on server CPU (runtimes + MinIO + PostgreSQL) | {two_sys:.2f} | |")
    print(f"| (c) two runtimes / (a) embedded, clips/s | {median(c, rate) / median(a, rate):.2f} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--clips", type=int, default=200, help="clips in the timed burst, per configuration")
    ap.add_argument("--rounds", type=int, default=3,
                    help="run (a), (b), (c) this many times, interleaved; the ratios are of the medians")
    ap.add_argument("--pg-fsync", choices=("on", "off"), default="on",
                    help="PostgreSQL's fsync (on: as deployed; the embedded stores fsync too)")
    args = ap.parse_args()
    message = postgres_missing_message()
    if message:
        sys.exit(f"bench_scale_out needs PostgreSQL: {message}")
    work = Path(tempfile.mkdtemp(prefix="cryospy-bench-scale-"))
    pg_root = Path(tempfile.mkdtemp(prefix="cryospy-bench-pg-"))   # not under work: the server runs as 'postgres'
    pg = make_server(pg_root, fsync=args.pg_fsync == "on").start()
    try:
        clip = make_clip(work)
        minio_binary = ensure_minio()
        configurations = [("(a) 1 runtime, embedded", None, 1), ("(b) 1 runtime, PostgreSQL", pg, 1),
                          ("(c) 2 runtimes, PostgreSQL", pg, 2)]
        rounds = []
        for n in range(args.rounds):
            rounds.append([run_configuration(name, work / f"r{n}-{i}", minio_binary, clip, server, runtimes,
                                             args.cameras, args.clips)
                           for i, (name, server, runtimes) in enumerate(configurations)])
    finally:
        pg.stop()
        shutil.rmtree(pg_root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print_tables(rounds, len(clip) / 1e6, args)


if __name__ == "__main__":
    main()
