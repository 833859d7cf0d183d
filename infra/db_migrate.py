"""``cryospy db migrate --to postgres|embedded``: move a deployment's clip index, job queue and device registry
between the embedded stores (TinyDB files, SQLite) and PostgreSQL, and prove the copy equal before saying so.

What moves: every clip record as stored (protected flags, tombstones, chain verdicts, each clip's ``live``
numbering), every fragment table, each device's running totals, live-stream counters and quarantine figure
(functions/index/transfer.py says why not through upserts), and every row of the job queue with its id, state,
attempts and reason, dead letters included. A job a runtime was running is copied as pending, as a restarting
runtime would make it. Every device's registry record (secret hash, signing key, settings, storage token).
Not moved: the alert limits (at worst one alert mail each goes out again early) and what stays per runtime
anyway (health reports, sessions: docs/postgres.md). The source is only read, so it stays as it was: a
backup to delete once the new store has served for a while.

The copy is verified by reading both stores back: the same devices and totals, the same days, every clip
record equal field by field with its fragments, the same queue rows and the same dead letters, the same
registry records. A target that already holds anything is refused unless ``force``, which empties it first.

No runtime may write either store meanwhile: an embedded store belongs to the runtime of its data directory
(this refuses to start while its port is taken), and PostgreSQL to every runtime pointed at it (stop them all).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryospy.common.database import open_pool, redacted
from cryospy.functions.devices.device_store import DeviceStore, FileDeviceStore
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.index.transfer import IndexTransfer

from .deployment import Deployment
from .errors import InfraError
from .jobqueue import DeadLetter, JobQueue, JobRow
from .minio_server import port_is_free
from .pg_jobqueue import PostgresJobQueue
from .stores import registry_key

log = logging.getLogger(__name__)
TARGETS = ("postgres", "embedded")
MISMATCHES_SHOWN = 5


class MigrationError(InfraError):
    """The target is not empty, a runtime still runs, or the copy differs from the source."""


class TransferIndex(ClipIndex, IndexTransfer, Protocol):
    pass


class TransferQueue(Protocol):
    def export_rows(self) -> list[JobRow]: ...
    def import_rows(self, rows: list[JobRow]) -> None: ...
    def dead_letters(self) -> list[DeadLetter]: ...
    def counts(self) -> dict[str, int]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Stores:
    """One side of a migration: an index, a queue and a device registry, and how to name them to the user."""
    index: TransferIndex
    queue: TransferQueue
    devices: DeviceStore
    name: str

    def close(self) -> None:
        self.index.close()
        self.queue.close()
        self.devices.close()


def embedded_stores(dep: Deployment, index_key: Callable[[], bytes]) -> Stores:
    return Stores(TinyDBIndex(dep.path("index"), index_key),
                  JobQueue(dep.path("runtime", "jobs.sqlite"), recover=False),
                  FileDeviceStore(dep.path("runtime", "devices.json")), f"the embedded store in {dep.data_dir}")


def postgres_stores(dep: Deployment, url: str, index_key: Callable[[], bytes]) -> Stores:
    key = registry_key(dep)
    return Stores(PostgresIndex(open_pool(url, max_size=2, name="cryospy-migrate"), index_key),
                  PostgresJobQueue(open_pool(url, max_size=1, name="cryospy-migrate"), recover=False),
                  PostgresDeviceStore(open_pool(url, max_size=1, name="cryospy-migrate"), lambda: key),
                  f"PostgreSQL at {redacted(url)}")


@dataclass(frozen=True)
class MigrationReport:
    devices: int
    registered: int
    days: int
    clips: int
    jobs: int
    dead_letters: int
    seconds: float


def refuse_if_runtime_runs(dep: Deployment) -> None:
    if not port_is_free(dep.listen_host, dep.runtime_port):
        raise MigrationError(f"port {dep.runtime_port} is in use, so the runtime of {dep.data_dir} seems to run: "
                             "stop it (and every runtime sharing its database) first; a migration copies stores "
                             "that nothing writes meanwhile")


def is_empty(stores: Stores) -> bool:
    return (not stores.index.device_totals() and not stores.index.devices()
            and not any(stores.queue.counts().values()) and not stores.devices.all())


def migrate(source: Stores, target: Stores, *, force: bool = False,
            progress: Callable[[str], None] = lambda _: None) -> MigrationReport:
    """Copy ``source`` into ``target`` and verify it (MigrationError on any difference)."""
    started = time.monotonic()
    if not is_empty(target):
        if not force:
            raise MigrationError(f"{target.name} already holds clips or jobs; migrating would mix two deployments. "
                                 "Point at an empty database (or schema), or pass --force to empty it first")
        progress(f"emptying {target.name} (--force)")
        target.index.clear()
        target.queue.clear()
        target.devices.clear()
    days = clips = 0
    totals = source.index.device_totals()
    for device_id in _devices(source):
        device_days = source.index.days(device_id)
        for day in device_days:
            records = source.index.clips_for_day(device_id, day, with_fragments=True)
            target.index.import_day(device_id, day, records)
            clips += len(records)
        days += len(device_days)
        progress(f"{device_id}: {len(device_days)} day(s) copied")
    for device in totals:
        target.index.import_device(device)
    rows = [r.at_rest() for r in source.queue.export_rows()]
    target.queue.import_rows(rows)
    progress(f"job queue: {len(rows)} row(s) copied")
    registered = _registry(source)
    for doc in registered:
        target.devices.insert(doc)
    progress(f"device registry: {len(registered)} camera(s) copied; verifying")
    verify(source, target)
    dead = sum(1 for r in rows if r.state == "dead")
    return MigrationReport(len(_devices(source)), len(registered), days, clips, len(rows), dead,
                           time.monotonic() - started)


def _registry(stores: Stores) -> list[dict[str, object]]:
    return sorted(stores.devices.all(), key=lambda d: str(d["device_id"]))


def _devices(stores: Stores) -> list[str]:
    return sorted(set(stores.index.devices()) | {t.device_id for t in stores.index.device_totals()})


def verify(source: Stores, target: Stores) -> None:
    """Read both sides back and compare everything copied; MigrationError naming the first differences."""
    problems: list[str] = []
    if _devices(source) != _devices(target):
        problems.append(f"devices differ: {_devices(source)} vs {_devices(target)}")
    if source.index.device_totals() != target.index.device_totals():
        problems.append("device totals or live-stream counters differ")
    for device_id in _devices(source):
        days = source.index.days(device_id)
        if days != target.index.days(device_id):
            problems.append(f"{device_id}: the days holding clips differ")
            continue
        for day in days:
            theirs = target.index.clips_for_day(device_id, day, with_fragments=True)
            ours = source.index.clips_for_day(device_id, day, with_fragments=True)
            if ours != theirs:
                different = next((a.key for a, b in zip(ours, theirs, strict=False) if a != b), "a clip")
                problems.append(f"{device_id} {day}: {len(ours)} vs {len(theirs)} clips; {different} differs")
    if [r.at_rest() for r in source.queue.export_rows()] != target.queue.export_rows():
        problems.append("job queue rows differ")
    if source.queue.dead_letters() != target.queue.dead_letters():
        problems.append("dead letters differ")
    if _registry(source) != _registry(target):
        problems.append("device registry records differ")
    if problems:
        shown = "; ".join(problems[:MISMATCHES_SHOWN])
        more = f" (and {len(problems) - MISMATCHES_SHOWN} more)" if len(problems) > MISMATCHES_SHOWN else ""
        raise MigrationError(f"the copy in {target.name} differs from {source.name}: {shown}{more}. The source is "
                             "unchanged; keep using it, and report this")


def run(dep: Deployment, url: str, to: str, index_key: bytes, *, force: bool = False,
        progress: Callable[[str], None] = lambda _: None) -> MigrationReport:
    """``cryospy db migrate``: the deployment's embedded stores to the database at ``url`` (``to="postgres"``)
    or back (``to="embedded"``)."""
    if to not in TARGETS:
        raise MigrationError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    refuse_if_runtime_runs(dep)
    embedded = embedded_stores(dep, lambda: index_key)
    try:
        database = postgres_stores(dep, url, lambda: index_key)
    except BaseException:
        embedded.close()
        raise
    source, target = (embedded, database) if to == "postgres" else (database, embedded)
    progress(f"copying {source.name} to {target.name}")
    try:
        report = migrate(source, target, force=force, progress=progress)
    finally:
        source.close()
        target.close()
    log.info("migrated %d clips and %d queue rows to %s in %.1f s", report.clips, report.jobs, target.name,
             report.seconds)
    return report
