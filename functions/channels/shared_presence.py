"""Presence across several runtimes (``database_url``): a camera is offline only when *no* runtime has heard
from it, and each online → offline and offline → online change is published by exactly one runtime.

With cameras spread over runtimes, the embedded :class:`~.presence.Presence` of runtime B hears nothing from a
camera that talks only to runtime A, and would report it offline while it is fine; and a change both
runtimes noticed would reach Home Assistant twice. So the state lives in PostgreSQL, one row per camera in
``device_presence``:

* ``device``: a keyed hash of the camera's id (the registry key's pseudonym, as ``registry_devices``);
* ``contact``: sealed, the camera's id and the time of its last contact with any runtime;
* ``offline``: whether a presence check found it silent (the one flag in the clear: a row that stops
  changing tells the database's operator as much);
* ``reported``: sealed, the agent's own last word (``camera_online`` / ``camera_offline``).

How a runtime takes part (:class:`SharedPresence`, the same surface as ``Presence``):

* **Contact costs a device request nothing** while the camera is online: :meth:`SharedPresence.seen` notes
  the time in memory, and the presence loop writes the noted contacts, and those of the cameras whose
  long-poll this runtime holds, once per check (``check_s``, at most 5 s), all in one transaction: one row
  write per camera and runtime per check, however busy the camera is. Only a camera that is (or may be)
  offline is written at once, because its contact ends the silence.
* **Ending a silence** is a write that locks the row and returns whether it was offline: of several runtimes
  hearing the camera, the one whose write finds ``offline`` true publishes ``camera_online``; the others find
  it false.
* **Declaring a silence**: every check reads the table and, for a camera online whose last contact is older
  than ``offline_after_s``, sets ``offline`` only if the row still holds the contact it read (compare-and-set
  on the sealed contact): the runtime whose update changes the row publishes ``camera_offline``; a contact
  written in between makes the update miss. Times are the database's clock (each runtime corrects its own by
  it at every check), so runtimes whose clocks differ still agree.

A contact reaches the table at most one check after it happened, so a camera may be declared silent up to
``check_s`` early; a live agent is in touch every few seconds (its long-poll is held and asked again at once),
so this does not turn a live camera off. The state outlives the runtimes: a camera that fell silent while
every runtime was stopped gets its ``camera_offline`` from the first check after one starts (the embedded
presence starts it OFF without an event instead, as it cannot know when).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables
from cryospy.common.timefmt import parse_utc, utc_now
from cryospy.functions.index.postgres import Sealer

from .event import HomeEvent
from .presence import DEFAULT_OFFLINE_AFTER_S, Presence

log = logging.getLogger(__name__)
SCHEMA = """
CREATE TABLE IF NOT EXISTS device_presence (
    device bytea PRIMARY KEY,
    contact bytea NOT NULL,
    offline boolean NOT NULL DEFAULT false,
    reported bytea
);
"""


@dataclass(frozen=True)
class PresenceRow:
    camera: str
    contact: float               # seconds since the epoch, the database's clock
    offline: bool
    reported: str | None         # "ON" / "OFF": the agent's own last word
    version: bytes               # the sealed contact as stored: the compare-and-set's expected value


@dataclass(frozen=True)
class Resumed:
    """What a contact write found: whether it ended a silence, and the agent's last word."""
    was_offline: bool
    reported: str | None


class PostgresPresenceStore:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes]):
        """``pool`` is closed by :meth:`close`; ``key`` the registry key's getter (infra/stores.py)."""
        self._pool = pool
        self._sealer = Sealer(key)
        create_tables(pool, "device_presence", SCHEMA)

    def _device(self, camera: str) -> bytes:
        return self._sealer.pseudonym("device", camera)

    def _contact(self, device: bytes, camera: str, at: float) -> bytes:
        return self._sealer.seal({"camera": camera, "at": at}, b"presence", device)

    def _reported(self, device: bytes, blob: bytes | None) -> str | None:
        return str(self._sealer.open(blob, b"reported", device)) if blob is not None else None

    def now(self) -> float:
        """The database's clock, seconds since the epoch."""
        with self._pool.connection() as conn:
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(row[0]) if row else time.time()

    def contact(self, camera: str, at: float, ends_silence: bool = True) -> Resumed:
        """Record contact at ``at`` (kept only if later than the stored one) and, unless ``ends_silence`` is
        False (a contact written so late that it is itself older than the limit), end any silence, atomically."""
        return self.contacts([(camera, at, ends_silence)])[camera]

    def contacts(self, items: list[tuple[str, float, bool]]) -> dict[str, Resumed]:
        """:meth:`contact` for several cameras in one transaction (one commit for a whole check). Rows are
        locked in the order of their keys, so two runtimes writing the same cameras cannot deadlock."""
        out: dict[str, Resumed] = {}
        keyed = sorted((self._device(camera), camera, at, ends) for camera, at, ends in items)
        with self._pool.connection() as conn, conn.transaction():
            for device, camera, at, ends_silence in keyed:
                out[camera] = self._contact_in(conn, device, camera, at, ends_silence)
        return out

    def _contact_in(self, conn: psycopg.Connection, device: bytes, camera: str, at: float,
                    ends_silence: bool) -> Resumed:
        if conn.execute("INSERT INTO device_presence (device, contact) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        (device, self._contact(device, camera, at))).rowcount:
            return Resumed(False, None)
        row = conn.execute("SELECT contact, offline, reported FROM device_presence WHERE device = %s FOR UPDATE",
                           (device,)).fetchone()
        if row is None:    # removed between the two statements (the camera was deleted)
            return Resumed(False, None)
        before = float(self._sealer.open(row[0], b"presence", device)["at"])
        conn.execute("UPDATE device_presence SET contact = %s, offline = offline AND NOT %s WHERE device = %s",
                     (self._contact(device, camera, max(before, at)), ends_silence, device))
        return Resumed(bool(row[1]) and ends_silence, self._reported(device, row[2]))

    def report(self, camera: str, state: str, at: float) -> None:
        """The agent's own word on its camera ("ON" / "OFF")."""
        device = self._device(camera)
        with self._pool.connection() as conn:
            conn.execute("INSERT INTO device_presence (device, contact, reported) VALUES (%s, %s, %s) "
                         "ON CONFLICT (device) DO UPDATE SET reported = EXCLUDED.reported",
                         (device, self._contact(device, camera, at), self._sealer.seal(state, b"reported", device)))

    def prime(self, camera: str, at: float, offline: bool) -> None:
        """A camera's last contact from before the table had it (an upgrade): the state only, no event."""
        device = self._device(camera)
        with self._pool.connection() as conn:
            conn.execute("INSERT INTO device_presence (device, contact, offline) VALUES (%s, %s, %s) "
                         "ON CONFLICT DO NOTHING", (device, self._contact(device, camera, at), offline))

    def rows(self) -> list[PresenceRow]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT device, contact, offline, reported FROM device_presence").fetchall()
        out = []
        for device, contact, offline, reported in rows:
            device, contact = bytes(device), bytes(contact)
            doc = self._sealer.open(contact, b"presence", device)
            out.append(PresenceRow(str(doc["camera"]), float(doc["at"]), bool(offline),
                                   self._reported(device, reported), contact))
        return out

    def mark_offline(self, row: PresenceRow) -> bool:
        """Claim the online → offline change: True for the one runtime whose update found the row as read."""
        with self._pool.connection() as conn:
            return conn.execute("UPDATE device_presence SET offline = true "
                                "WHERE device = %s AND NOT offline AND contact = %s",
                                (self._device(row.camera), row.version)).rowcount == 1

    def forget(self, camera: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM device_presence WHERE device = %s", (self._device(camera),))

    def close(self) -> None:
        self._pool.close()


class SharedPresence(Presence):
    """:class:`~.presence.Presence` whose state is the database's (module docstring). The inherited table
    keeps what is this runtime's own: the long-polls it holds."""

    def __init__(self, store: PostgresPresenceStore, offline_after_s: float = DEFAULT_OFFLINE_AFTER_S,
                 monotonic: Callable[[], float] = time.monotonic, clock: Callable[[], float] | None = None) -> None:
        """``clock``: seconds since the epoch; by default this machine's, corrected by the database's at every
        check (tests give a clock of their own, used as it is)."""
        super().__init__(offline_after_s, monotonic)
        self.store = store
        self._clock = clock or time.time
        self._follow_database = clock is None
        self._offset = 0.0                          # the database's clock minus ours
        self._marked: dict[str, float] = {}         # contact since the last check, not written yet: its time
        self._sync_clock()
        self._rows = {r.camera: r for r in self.store.rows()}   # the table as last read

    def _sync_clock(self) -> None:
        if self._follow_database:
            self._offset = self.store.now() - self._clock()

    def _now(self) -> float:
        return self._clock() + self._offset

    def prime(self, last_seen: Iterable[tuple[str, str | None]]) -> None:
        """Cameras the table does not have yet start from their last-seen, without an event (as in Presence)."""
        now = self._now()
        for camera, seen in last_seen:
            if not seen or camera in self._rows:
                continue
            try:
                at = parse_utc(seen).timestamp()
            except ValueError:
                continue
            self.store.prime(camera, at, offline=now - at > self.offline_after_s)
        rows = {r.camera: r for r in self.store.rows()}
        with self._lock:
            self._rows = rows

    def seen(self, camera: str) -> list[HomeEvent]:
        super().seen(camera)    # the local table's own transitions are not used: the database decides
        now = self._now()
        with self._lock:
            row = self._rows.get(camera)
            if row is not None and not row.offline:
                self._marked[camera] = now
                return []
        try:
            return self._write_contact(camera, now)
        except psycopg.Error as exc:   # the check writes it again; a device request never fails for this
            log.warning("%s: contact not written to the database (%s); retrying at the next check", camera, exc)
            with self._lock:
                self._marked[camera] = now
            return []

    @contextlib.contextmanager
    def holding(self, camera: str) -> Iterator[None]:
        """A long-poll held here: written as contact at every check while held, and once more when it ends."""
        try:
            with super().holding(camera):
                yield
        finally:
            with self._lock:
                self._marked[camera] = self._now()

    def _write_contact(self, camera: str, at: float) -> list[HomeEvent]:
        return self._write_contacts({camera: at})

    def _write_contacts(self, contacts: dict[str, float]) -> list[HomeEvent]:
        """Write contacts (camera -> when) in one transaction; the ``camera_online`` of each silence ended."""
        now = self._now()
        fresh = {camera: now - at <= self.offline_after_s for camera, at in contacts.items()}
        found = self.store.contacts([(camera, at, fresh[camera]) for camera, at in contacts.items()])
        out = []
        with self._lock:
            for camera, resumed in found.items():
                row = self._rows.get(camera)
                if fresh[camera] or row is None:
                    self._rows[camera] = (replace(row, offline=False, reported=resumed.reported) if row is not None
                                          else PresenceRow(camera, contacts[camera], False, resumed.reported, b""))
                if resumed.was_offline and resumed.reported != "OFF":
                    out.append(HomeEvent(camera=camera, kind="camera_online", at=utc_now(), detail="contact resumed"))
        for event in out:
            log.info("%s: contact from its agent again", event.camera)
        return out

    def reported(self, event: HomeEvent) -> None:
        if event.kind not in ("camera_online", "camera_offline"):
            return
        super().reported(event)
        state = "ON" if event.kind == "camera_online" else "OFF"
        self.store.report(event.camera, state, self._now())
        with self._lock:
            row = self._rows.get(event.camera)
            self._rows[event.camera] = (replace(row, reported=state) if row is not None
                                        else PresenceRow(event.camera, self._now(), False, state, b""))

    def check(self) -> list[HomeEvent]:
        """Write this runtime's contacts, then claim the silences: the events this runtime won."""
        self._sync_clock()
        now = self._now()
        with self._lock:
            contacts = {**self._marked, **{c: now for c, s in self._cameras.items() if s.held}}
            self._marked = {}
        try:
            out = self._write_contacts(contacts) if contacts else []
        except psycopg.Error:
            with self._lock:   # written at the next check
                self._marked = {**contacts, **self._marked}
            raise
        rows = {}
        for row in self.store.rows():
            if not row.offline and now - row.contact > self.offline_after_s and self.store.mark_offline(row):
                row = replace(row, offline=True)
                if row.reported != "OFF":
                    out.append(HomeEvent(camera=row.camera, kind="camera_offline", at=utc_now(),
                                         detail=f"no contact from the agent for {self.offline_after_s:g} s"))
                    log.warning("%s: %s", row.camera, out[-1].detail)
            rows[row.camera] = row
        with self._lock:
            self._rows = rows
        return out

    def connectivity(self, camera: str) -> str | None:
        with self._lock:
            row = self._rows.get(camera)
        if row is None:
            return None
        return "OFF" if row.offline or row.reported == "OFF" else "ON"

    def forget(self, camera: str) -> None:
        super().forget(camera)
        self.store.forget(camera)
        with self._lock:
            self._rows.pop(camera, None)
            self._marked.pop(camera, None)

    def close(self) -> None:
        self.store.close()
