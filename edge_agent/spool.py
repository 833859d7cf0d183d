"""The durable spool: sealed clips wait on disk until the server has them.

Each clip is two files named by its zero-padded sequence number: ``<seq>.cse`` (the sealed clip) and
``<seq>.json`` (what the upload needs: capture time, object key, size, SHA-256, duration, the motion summary).
Both are written
to a temporary name, fsynced and renamed, the JSON last, so a crash or power cut leaves either a complete
entry or nothing usable (leftovers are swept at start). The chain state (next sequence number, hash of the
last header) is derived from the spool and ``state.json`` together, so a crash between sealing a clip and
saving the state cannot reuse a sequence number.

The spool is bounded by bytes. When a new clip does not fit, the oldest clips without motion are dropped
first, then the oldest with motion; each drop is logged and counted in ``dropped.json`` (so the count the
heartbeat reports survives restarts) and shows up as a sequence gap in verification, which is the honest
record of what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryospy.common.atomic import fsync_dir, write_atomic
from cryospy.common.sealed import ZERO_HASH, read_header

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpoolEntry:
    sequence: int
    key: str
    captured_at: str
    size: int
    sha256: str
    duration_s: float
    motion: bool
    # The detector's summary (MotionSummary.to_dict()) for the slot request; None when it failed or for
    # entries spooled by an older agent.
    motion_summary: dict[str, Any] | None = field(default=None, compare=False)
    motion_error: bool = False

    @property
    def name(self) -> str:
        return f"{self.sequence:020d}"


class Spool:
    def __init__(self, root: Path, max_bytes: int):
        self.root = root
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # The entry the uploader is sending: never dropped, or a clip could be counted as dropped and
        # still arrive.
        self.uploading: int | None = None
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sweep()
        self._repair_chain_state()
        self.dropped = self._load_dropped()

    def _sweep(self) -> None:
        """Remove half-written files and clips whose metadata never landed."""
        for part in self.root.glob("*.part"):
            part.unlink(missing_ok=True)
        for sealed in self.root.glob("*.cse"):
            if not sealed.with_suffix(".json").exists():
                log.warning("removing %s: its metadata was never written (crash while spooling)", sealed.name)
                sealed.unlink(missing_ok=True)

    def _load_dropped(self) -> int:
        try:
            return int(json.loads((self.root / "dropped.json").read_text())["dropped"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropped.json is unreadable (%s); the dropped-clip count restarts at 0", exc)
            return 0

    # -- chain state ---------------------------------------------------------------------------------
    def chain_state(self) -> tuple[int, bytes]:
        """(next sequence number, hash of the last sealed header)."""
        state_path = self.root / "state.json"
        try:
            state = json.loads(state_path.read_text())
            next_seq, prev = int(state["next_sequence"]), bytes.fromhex(state["prev_hash"])
        except FileNotFoundError:
            next_seq, prev = 0, ZERO_HASH
        # Only after a crash between commit and save_chain_state is the spool ahead of state.json; then the
        # newest entry's header is the chain's head. Opening the spool repairs state.json at once, before an
        # uploader could send that entry away and take the evidence with it.
        entries = self.entries()
        if entries and entries[-1].sequence >= next_seq:
            last = entries[-1]
            with open(self.root / f"{last.name}.cse", "rb") as fh:
                prev = read_header(fh).header_hash
            next_seq = last.sequence + 1
        return next_seq, prev

    def next_sequence(self) -> int:
        """The sequence number the next clip will get (cheap; for the heartbeat)."""
        try:
            state_next = int(json.loads((self.root / "state.json").read_text())["next_sequence"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            state_next = 0
        entries = self.entries()
        return max(state_next, entries[-1].sequence + 1 if entries else 0)

    def _repair_chain_state(self) -> None:
        try:
            saved = json.loads((self.root / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            saved = None
        next_seq, prev = self.chain_state()
        if next_seq > 0 and (saved is None or saved.get("next_sequence") != next_seq):
            log.warning("the spool is ahead of its chain state (a crash after sealing clip #%d); repaired",
                        next_seq - 1)
            self.save_chain_state(next_seq, prev)

    def save_chain_state(self, next_sequence: int, prev_hash: bytes) -> None:
        write_atomic(self.root / "state.json",
                      json.dumps({"next_sequence": next_sequence, "prev_hash": prev_hash.hex()}).encode())

    # -- entries -------------------------------------------------------------------------------------
    def sealed_path(self, entry: SpoolEntry) -> Path:
        return self.root / f"{entry.name}.cse"

    def temp_path(self, sequence: int) -> Path:
        return self.root / f"{sequence:020d}.cse.part"

    def commit(self, sequence: int, key: str, captured_at: str, duration_s: float, motion: bool,
               motion_summary: dict[str, Any] | None = None, motion_error: bool = False) -> SpoolEntry:
        """Turn a fully written ``temp_path(sequence)`` into a spool entry."""
        tmp = self.temp_path(sequence)
        digest = hashlib.sha256()
        with open(tmp, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
            os.fsync(fh.fileno())
        entry = SpoolEntry(sequence, key, captured_at, tmp.stat().st_size, digest.hexdigest(), duration_s, motion,
                           motion_summary, motion_error)
        with self._lock:
            self._make_room(entry.size)
            os.replace(tmp, self.sealed_path(entry))
            write_atomic(self.root / f"{entry.name}.json", json.dumps(asdict(entry)).encode())
            fsync_dir(self.root)
        return entry

    def entries(self) -> list[SpoolEntry]:
        out = []
        for meta in sorted(self.root.glob("*.json")):
            if not meta.name[:1].isdigit():     # state.json, dropped.json
                continue
            try:
                doc: dict[str, Any] = json.loads(meta.read_text())
                out.append(SpoolEntry(**doc))
            except FileNotFoundError:
                continue                # uploaded and removed while we listed: not waiting any more
            except (ValueError, TypeError) as exc:
                log.error("ignoring unreadable spool entry %s: %s", meta.name, exc)
        return sorted(out, key=lambda e: e.sequence)

    def remove(self, entry: SpoolEntry) -> None:
        with self._lock:
            (self.root / f"{entry.name}.json").unlink(missing_ok=True)
            self.sealed_path(entry).unlink(missing_ok=True)

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.cse"))

    def stats(self) -> tuple[int, int]:
        """(clips waiting, their bytes) for the heartbeat."""
        entries = self.entries()
        return len(entries), sum(e.size for e in entries)

    def _make_room(self, incoming: int) -> None:
        entries = self.entries()
        used = sum(e.size for e in entries)
        candidates = [e for e in entries if e.sequence != self.uploading]
        victims = [e for e in candidates if not e.motion] + [e for e in candidates if e.motion]
        dropped_before = self.dropped
        while used + incoming > self.max_bytes and victims:
            victim = victims.pop(0)
            (self.root / f"{victim.name}.json").unlink(missing_ok=True)
            self.sealed_path(victim).unlink(missing_ok=True)
            used -= victim.size
            self.dropped += 1
            log.warning("spool full (%d of %d bytes): dropped clip #%d captured %s%s", used + incoming,
                        self.max_bytes, victim.sequence, victim.captured_at, " (had motion)" if victim.motion else "")
        if self.dropped != dropped_before:
            write_atomic(self.root / "dropped.json", json.dumps({"dropped": self.dropped}).encode())
