"""Small documents every runtime of a deployment must agree on, kept once in PostgreSQL (``database_url``).

With several runtimes (``cryospy runtime add``) the key store (``keys.json``: accounts, their key slots), the
second-factor enrolments (``runtime/second-factor.sealed``) and the channels saved on the dashboard
(``runtime/channels.sealed``) must be one copy, or an account removed on one runtime still logs in on another.
They live in one table::

    shared_documents (name text PRIMARY KEY, version bigint, doc bytea, updated_at timestamptz)

* ``name`` is one of a few fixed words (``keys``, ``second-factor``, ``channels``): nothing of the content.
* ``doc`` is the file's bytes padded to a multiple of 4 KiB and sealed with AES-256-GCM, the name bound in, under
  a key derived (HKDF-SHA-256) from the deployment's ``admin_token``, as the registry's rows are
  (infra/stores.py): the database does not have it. The key store's slots are scrypt-wrapped master keys; in the
  clear they would let whoever copies the database guess passphrases offline. Sealed, the operator learns no
  account name and no slot, and from the padded size not how many accounts there are.
* ``version`` counts the changes; every write is compare-and-set on it, so two runtimes changing the accounts
  at once cannot lose a change. It is bound into the seal, so an older blob cannot be put back under the
  current number; putting back an older blob *with* its older number is seen by every running runtime
  (the version went backwards) and refused (:meth:`SharedFile.pull`), as a removed account would come back.
  :meth:`SharedDocuments.locked` serialises writers on a transaction-scoped
  advisory lock besides, so a change waits for the other instead of failing.
* ``updated_at`` and ``version`` tell the operator when a document changed (an account or channel edited; for
  the second factor, a login with a code). docs/postgres.md lists this.

A write sends ``NOTIFY cryospy_documents`` (payload: writer id, name, version); each runtime listens and
pulls the new copy into its local file (:class:`SharedFile`), and checks every ``recheck_seconds`` besides, in
case a notification was missed while its connection was down.

::

    CryoSpyError
    └── InfraError, MirrorError
        └── SharedDocumentError     the shared copy cannot be read or written (also: the database is down)
            └── DocumentConflict    another runtime changed it at the same moment (try again)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool, PoolTimeout

from cryospy.common.atomic import write_atomic
from cryospy.common.database import create_tables, listen
from cryospy.common.file_mirror import MirrorError

from .errors import InfraError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS shared_documents (
    name text PRIMARY KEY,
    version bigint NOT NULL,
    doc bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""
CHANNEL = "cryospy_documents"
PAD = 4096
MAX_DOCUMENT = 4 * 1024 * 1024   # the key store of 64 accounts is ~30 KiB; anything near this is not ours
_VERSION = b"\x01"


class SharedDocumentError(InfraError, MirrorError):
    pass


class DocumentConflict(SharedDocumentError):
    pass


@dataclass(frozen=True)
class Stored:
    version: int
    data: bytes


class Held:
    """A document held under :meth:`SharedDocuments.locked`: what it was, and the one write allowed."""

    def __init__(self, docs: SharedDocuments, conn: psycopg.Connection[Any], name: str, current: Stored | None):
        self._docs, self._conn, self.name, self.current = docs, conn, name, current

    def put(self, data: bytes) -> int:
        return self._docs._put_in(self._conn, self.name, data, self.current.version if self.current else 0)


class SharedDocuments:
    def __init__(self, pool: ConnectionPool, key: bytes, *, recheck_seconds: float = 30.0):
        """``pool`` is closed by :meth:`close`; ``key`` is the 32-byte sealing key (infra/stores.py)."""
        self._pool = pool
        self._aead = AESGCM(key)
        self._writer = uuid.uuid4().hex[:16]
        self._recheck = recheck_seconds
        self._watchers: dict[str, list[Callable[[], None]]] = {}
        self._watch_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        create_tables(pool, "documents", SCHEMA)

    # -- sealing -------------------------------------------------------------------------------------
    def _seal(self, name: str, version: int, data: bytes) -> bytes:
        if len(data) > MAX_DOCUMENT:
            raise SharedDocumentError(f"the {name} document is {len(data)} bytes, more than the "
                                      f"{MAX_DOCUMENT} a shared document may hold")
        body = len(data).to_bytes(4, "big") + data
        body += bytes(-len(body) % PAD)
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, body, _aad(name, version))

    def _open(self, name: str, version: int, blob: bytes) -> bytes:
        blob = bytes(blob)
        try:
            if blob[:1] != _VERSION:
                raise InvalidTag
            body = self._aead.decrypt(blob[1:13], blob[13:], _aad(name, version))
        except InvalidTag:
            raise SharedDocumentError(
                f"the shared {name} document in the database does not open with this deployment's key (another "
                "deployment's database, a changed admin_token, or the row or its version was edited); check "
                "database_url in server.json, or restore the database from a backup") from None
        size = int.from_bytes(body[:4], "big")
        return body[4:4 + size]

    # -- reads and writes ----------------------------------------------------------------------------
    def version(self, name: str) -> int:
        """The document's version, 0 when there is none yet: one indexed probe, nothing opened."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT version FROM shared_documents WHERE name = %s", (name,)).fetchone()
        return int(row[0]) if row else 0

    def get(self, name: str) -> Stored | None:
        with self._pool.connection() as conn:
            return self._get_in(conn, name)

    def _get_in(self, conn: psycopg.Connection[Any], name: str) -> Stored | None:
        row = conn.execute("SELECT version, doc FROM shared_documents WHERE name = %s", (name,)).fetchone()
        return Stored(int(row[0]), self._open(name, int(row[0]), row[1])) if row else None

    def put(self, name: str, data: bytes, expected: int) -> int:
        """Store ``data`` as the next version if the document is still at ``expected`` (0: there is none yet);
        returns the new version. DocumentConflict if another writer got there first."""
        with self._pool.connection() as conn, conn.transaction():
            return self._put_in(conn, name, data, expected)

    def _put_in(self, conn: psycopg.Connection[Any], name: str, data: bytes, expected: int) -> int:
        sealed = self._seal(name, expected + 1, data)
        if expected == 0:
            done = conn.execute("INSERT INTO shared_documents (name, version, doc) VALUES (%s, 1, %s) "
                                "ON CONFLICT DO NOTHING", (name, sealed)).rowcount
        else:
            done = conn.execute("UPDATE shared_documents SET version = version + 1, doc = %s, updated_at = now() "
                                "WHERE name = %s AND version = %s", (sealed, name, expected)).rowcount
        if not done:
            raise DocumentConflict(f"another runtime changed the shared {name} document at the same moment; "
                                   "nothing was saved: try again")
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{self._writer}:{name}:{expected + 1}"))
        return expected + 1

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[Held]:
        """One transaction holding the document's advisory lock (taken also when it does not exist yet): other
        writers wait until this one commits. The write inside is still compare-and-set."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"cryospy document {name}".encode()),))
            yield Held(self, conn, name, self._get_in(conn, name))

    # -- change notification -------------------------------------------------------------------------
    def watch(self, name: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` when another process changes ``name``, and every ``recheck_seconds`` anyway."""
        with self._watch_lock:
            self._watchers.setdefault(name, []).append(callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="cryospy-documents-listen", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        listen(self._pool, CHANNEL, self._stop, self._catch_up_and_hear, "the shared documents' change notifications")

    def _catch_up_and_hear(self, conn: psycopg.Connection[Any]) -> None:
        self._call(set(self._watchers))   # whatever changed while nobody listened
        self._hear(conn)

    def _hear(self, conn: psycopg.Connection[Any]) -> None:
        next_check = time.monotonic() + self._recheck
        while not self._stop.is_set():
            names = set()
            for note in conn.notifies(timeout=0.5):
                writer, _, rest = note.payload.partition(":")
                if writer != self._writer:
                    names.add(rest.partition(":")[0])
            if time.monotonic() >= next_check:
                names, next_check = set(self._watchers), time.monotonic() + self._recheck
            self._call(names)

    def _call(self, names: set[str]) -> None:
        for name in sorted(names):
            for callback in self._watchers.get(name, []):
                try:
                    callback()
                except Exception:
                    log.exception("applying the shared %s document failed", name)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._pool.close()


def _aad(name: str, version: int) -> bytes:
    return f"cryospy shared document|{name}|{version}".encode()


class SharedFile:
    """A local file kept as a cache of the shared document ``name`` (a :class:`~cryospy.common.file_mirror.
    FileMirror`). The database's copy wins: :meth:`pull` overwrites the file with it. The first process to use
    a document that is not in the database yet puts its local file there (the first runtime started with
    ``database_url`` brings its key store)."""

    def __init__(self, documents: SharedDocuments, name: str, path: Path):
        self.documents, self.name, self.path = documents, name, path
        self._version: int | None = None   # the version the local file holds, when known
        self._newest = 0                   # the newest version this process has seen: never go back from it
        self._lock = threading.RLock()
        self._editor: int | None = None    # the thread inside editing(): the file is the held copy already

    def pull(self) -> bool:
        with self._database_errors(), self._lock:
            if self._editor == threading.get_ident():
                return False
            version = self.documents.version(self.name)
            if version and version == self._version:
                return False
            self._forward(version)
            if version == 0:
                return self._seed()
            stored = self.documents.get(self.name)
            return self._sync(stored) if stored else self._seed()

    def _seed(self) -> bool:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            self._version = self._newest = self.documents.put(self.name, data, 0)
            log.info("put this runtime's %s into the shared database (the first runtime to use it)", self.path.name)
            return False
        except DocumentConflict:   # another process seeded it at the same moment: theirs is the copy now
            stored = self.documents.get(self.name)
            return self._sync(stored) if stored else False

    def _sync(self, stored: Stored) -> bool:
        try:
            same = self.path.read_bytes() == stored.data
        except FileNotFoundError:
            same = False
        if not same:
            write_atomic(self.path, stored.data)
        self._version = self._newest = stored.version
        return not same

    @contextlib.contextmanager
    def _database_errors(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, PoolTimeout) as exc:
            raise SharedDocumentError(f"cannot reach the database for the shared {self.name} document ({exc}); "
                                      "check that PostgreSQL runs, then try again") from None

    def _forward(self, version: int) -> None:
        """Refuse a shared copy older than the one this process already has (see the module's docstring)."""
        if version < self._newest:
            raise SharedDocumentError(
                f"the shared {self.name} document in the database went back from version {self._newest} to "
                f"{version} (the database was restored from a backup, or rolled back by whoever runs it): a "
                "removed account could come back that way, so this runtime keeps what it has. If you restored "
                "the database yourself, restart the runtimes")

    @contextlib.contextmanager
    def editing(self) -> Iterator[None]:
        with self._database_errors(), self._lock:
            try:
                with self.documents.locked(self.name) as held:
                    if held.current is not None:
                        self._forward(held.current.version)
                        self._sync(held.current)
                    self._editor = threading.get_ident()
                    try:
                        yield
                    finally:
                        self._editor = None
                    try:
                        after: bytes | None = self.path.read_bytes()
                    except FileNotFoundError:
                        after = None
                    if after is not None and (held.current is None or after != held.current.data):
                        self._version = self._newest = held.put(after)
            except BaseException:
                self._version = None   # the file may hold a change the database lacks: the next pull undoes it
                raise
