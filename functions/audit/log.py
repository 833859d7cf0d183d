"""The audit log file: append sealed, chained entries; check the chain; read and filter the entries back.

One file, ``runtime/audit.log`` in the deployment's data dir, one line per entry
(:mod:`cryospy.common.audit_chain` has the format and why it is sealed to the *public* key and chained over
the ciphertext). Appends are serialised by a lock, written with one ``write`` and fsynced, so a crash leaves
at most a torn last line, which the check then names.

The process remembers the (position, hash) of the last entry it wrote: :meth:`AuditLog.check` compares the
file with it, so an entry removed from the end, or a tail rewritten while the runtime runs, is caught even
where the chain alone would look whole. Decrypted entries are cached in memory by (position, hash), so the
audit page opens each box once per process; nothing decrypted is written anywhere.

Where the lines live is a :class:`LineStore`: the file above (:class:`AuditFile`), or, when several runtimes
share a database, one table every runtime appends to (infra/pg_audit.py): the chain is then one log of every
runtime's entries, each entry naming the runtime that wrote it (inside the sealed box).

Writing never raises into the action being recorded: the action already happened, and a full disk must not
turn a device deletion into an error page. A failed write is logged and shown on the status and audit pages
(:attr:`AuditLog.write_error`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.audit_chain import (
    GENESIS,
    AuditCheck,
    AuditFormatError,
    Line,
    check_log,
    entry_key,
    make_line,
    open_with_key,
    parse_line,
    seal_entry,
)
from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import DeploymentPublicKey, KeyStoreError, UnlockedKeys
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.errors import KeysLocked

from .actor import Actor, current

log = logging.getLogger(__name__)


class AuditUnavailable(CryoSpyError):
    """The log's lines cannot be read now (a shared log whose database is unreachable); the message says what
    to do. The check reports it as a problem; the audit page answers 503 with it."""


@dataclass(frozen=True)
class AuditEntry:
    """One decrypted entry. ``detail`` holds short strings and numbers only (never a secret)."""

    n: int
    at: str
    kind: str
    account: str
    via: str
    address: str
    detail: dict[str, Any] = field(default_factory=dict)
    runtime: str = ""   # which runtime wrote it, in a log several runtimes share ("" in a runtime's own file)

    @classmethod
    def from_doc(cls, n: int, doc: dict[str, Any]) -> AuditEntry:
        return cls(n, str(doc.get("at", "")), str(doc.get("kind", "")), str(doc.get("account", "")),
                   str(doc.get("via", "")), str(doc.get("address", "")), dict(doc.get("detail") or {}),
                   str(doc.get("runtime", "")))

    def to_doc(self) -> dict[str, Any]:
        doc = {"at": self.at, "kind": self.kind, "account": self.account, "via": self.via,
               "address": self.address, "detail": self.detail}
        return doc | {"runtime": self.runtime} if self.runtime else doc


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page asks for; empty strings match everything. Times are ``utc_stamp`` strings."""

    kind: str = ""
    account: str = ""
    since: str = ""
    until: str = ""

    def matches(self, entry: AuditEntry) -> bool:
        return ((not self.kind or entry.kind == self.kind or entry.kind.startswith(self.kind + "."))
                and (not self.account or entry.account == self.account)
                and (not self.since or entry.at >= self.since) and (not self.until or entry.at < self.until))


class NoAudit:
    """The null audit log (a bare API without the runtime, unit tests): records nothing."""

    write_error = ""

    def record(self, kind: str, actor: Actor | None = None, **detail: Any) -> None:
        """Nothing is kept."""

    def lines(self) -> list[str]:
        return []

    def check(self) -> AuditCheck:
        return check_log([], None)

    def query(self, wanted: AuditFilter, page: int = 1, per_page: int = 50) -> tuple[list[AuditEntry], int]:
        return [], 0

    def disclosure(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        """Nothing to close."""


Make = Callable[[int, str], tuple[str, str]]   # (position, previous hash) -> (the line, its hash)


class LineStore(Protocol):
    """Where the log's lines are kept: every line in order, and an append that is the only one at a time."""

    where: str

    def read(self) -> list[str]: ...

    def append(self, make: Make) -> tuple[int, str]:
        """Make the next line from the position and hash it chains to, and store it; returns (n, hash)."""
        ...

    def close(self) -> None: ...


class AuditFile:
    """The log in one file of this runtime's data directory. Appends are serialised by a lock, written with one
    ``write`` and fsynced, so a crash leaves at most a torn last line, which the check then names."""

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        self._count, self._last_hash = self._tail()

    def _tail(self) -> tuple[int, str]:
        """How many lines the file has and the hash the next entry chains to (the last line's, as written)."""
        lines = self.read()
        if not lines:
            return 0, GENESIS
        try:
            return len(lines), parse_line(lines[-1]).hash
        except ValueError:   # a torn or edited last line: chain on from its position; check() names it
            return len(lines), GENESIS

    def read(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.split("\n") if line]

    def append(self, make: Make) -> tuple[int, str]:
        with self._lock:
            n, prev = self._count, self._last_hash
            text, digest = make(n, prev)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (text + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._count, self._last_hash = n + 1, digest
        return n, digest

    def close(self) -> None:
        """Every line was written and fsynced when it was appended."""


class AuditLog:
    def __init__(self, path: Path, public_key: Callable[[], DeploymentPublicKey],
                 keys: Callable[[], UnlockedKeys], verify_key: Callable[[], Ed25519PublicKey | None],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), *, store: LineStore | None = None,
                 runtime: str = ""):
        """``store``: where the lines go (default: the file ``path``); ``runtime``: this runtime's name, written
        into each entry when several runtimes share one log."""
        self.path = path
        self._store: LineStore = store or AuditFile(path)
        self._runtime = runtime
        self._public_key, self._keys, self._verify_key, self._clock = public_key, keys, verify_key, clock
        self._cache: dict[tuple[int, str], AuditEntry] = {}
        self._head: tuple[int, str] | None = None     # the last entry this process wrote
        self.write_error = ""

    def lines(self) -> list[str]:
        return self._store.read()

    def close(self) -> None:
        self._store.close()

    # -- writing ------------------------------------------------------------------------------------
    def record(self, kind: str, actor: Actor | None = None, **detail: Any) -> None:
        """Append one entry for ``actor`` (default: whoever this request acts as)."""
        who = actor or current()
        entry = {"at": utc_stamp(self._clock()), "kind": kind, "account": who.account, "via": who.via,
                 "address": who.address, "detail": detail}
        if self._runtime:
            entry["runtime"] = self._runtime
        try:
            self._append(entry)
        except KeysLocked:
            log.warning("audit: %s not recorded: the deployment has no key store yet (first-run setup)", kind)
        except OSError as exc:
            self.write_error = f"the audit log {self._store.where} could not be written ({exc}); free disk space"
            log.error("audit: %s not recorded: %s", kind, exc)
        except Exception as exc:   # the database is down: the action already happened, so record the gap
            self.write_error = f"the audit log in {self._store.where} could not be written ({exc})"
            log.error("audit: %s not recorded: %s", kind, exc)

    def _append(self, entry: dict[str, Any]) -> None:
        recipient = self._public_key()
        try:
            signer = self._keys().server_signing_key
        except (KeysLocked, KeyStoreError):
            signer = None   # locked: chained now, vouched for by the next signed entry

        def make(n: int, prev: str) -> tuple[str, str]:
            return make_line(n, prev, seal_entry(entry, n, prev, recipient), signer)

        self._head = self._store.append(make)
        self.write_error = ""

    # -- checking and reading -----------------------------------------------------------------------
    def check(self) -> AuditCheck:
        """The chain from the first entry, signatures with the key store's server key, and this process's head."""
        try:
            verify_key = self._verify_key()
        except KeysLocked:
            verify_key = None
        try:
            lines = self.lines()
        except AuditUnavailable as exc:
            return AuditCheck(0, -1, 0, str(exc))
        return check_log(lines, verify_key, self._head)

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first, decrypted (needs the unlocked keys: raises KeysLocked). An entry whose
        line or box does not open is shown as kind ``unreadable`` in its place, not dropped."""
        keys = self._keys()
        out = []
        for i, text in enumerate(self.lines()):
            try:
                line = parse_line(text)
            except ValueError:
                out.append(AuditEntry(i, "", "unreadable", "", "", "", {"why": "not an audit line"}))
                continue
            out.append(self._open(line, keys))
        return out

    def _open(self, line: Line, keys: UnlockedKeys) -> AuditEntry:
        cached = self._cache.get((line.n, line.hash))
        if cached is not None:
            return cached
        try:
            entry = AuditEntry.from_doc(line.n, open_with_key(line.box, entry_key(line.box, keys), line.n,
                                                              line.prev))
        except (AuditFormatError, KeyStoreError, ValueError) as exc:
            return AuditEntry(line.n, "", "unreadable", "", "", "", {"why": str(exc)})
        self._cache[(line.n, line.hash)] = entry
        return entry

    def query(self, wanted: AuditFilter, page: int = 1, per_page: int = 50) -> tuple[list[AuditEntry], int]:
        """One page of the matching entries, newest first, and how many match in all."""
        matching = [e for e in reversed(self.entries()) if wanted.matches(e)]
        start = max(page - 1, 0) * per_page
        return matching[start:start + per_page], len(matching)

    def disclosure(self) -> list[dict[str, Any]]:
        """For an evidence export: each line's position and hash, its own AES key and its readable entry
        (``cryospy verify`` opens each box with its key and compares). Needs the unlocked keys."""
        keys = self._keys()
        out = []
        for text in self.lines():
            try:
                line = parse_line(text)
                key = entry_key(line.box, keys)
                entry = open_with_key(line.box, key, line.n, line.prev)
            except (ValueError, AuditFormatError, KeyStoreError):
                continue     # the check names it; a disclosure only carries what opens
            out.append({"n": line.n, "hash": line.hash, "key": key.hex(), "entry": entry})
        return out


EXPORT_FORMAT = "cryospy-audit-export-v1"


def export_files(audit: AuditLog | NoAudit, server_verify_key: str) -> dict[str, bytes]:
    """The audit log as an evidence export carries it (``cryospy verify`` checks both files):

    ``audit/audit.log``     the log exactly as stored: sealed, chained, signed
    ``audit/entries.json``  the server's verify key, and per entry its position, hash, own AES key and the
                            readable entry (anyone can open each box with its key and compare)
    """
    lines = audit.lines()
    if not lines:
        return {}
    doc = {"format": EXPORT_FORMAT, "server_verify_key": server_verify_key, "entries": audit.disclosure()}
    return {"audit/audit.log": ("\n".join(lines) + "\n").encode(),
            "audit/entries.json": json.dumps(doc, indent=1).encode()}
