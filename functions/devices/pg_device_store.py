"""The device registry's records in PostgreSQL (``database_url``), shared by every runtime of a deployment.

One row per device in ``registry_devices``:

* ``device``: a keyed hash of the device id (HMAC-SHA-256, 16 bytes), so no camera name;
* ``token``: a keyed hash of its storage token (unique: two devices never share one, and
  :meth:`PostgresDeviceStore.by_token` is one index probe);
* ``doc``: the whole registry document sealed with AES-256-GCM, the device hash bound in: name, the salted
  hash of its secret, its public signing key, settings, upload identity, storage token.

The key is not the index key: cameras authenticate while the runtime is locked, when the index key is not in
memory. It is derived (HKDF-SHA-256) from the deployment's ``admin_token`` (infra/stores.py): a secret every
runtime of the deployment has in its deployment.json and the database does not, and whose holder may list the
devices through the admin API anyway. A row's reads open it under the key, so a row edited or moved in the
database fails (IndexCorrupt), as a tampered index row does.

:meth:`change` runs in one transaction holding the row (``SELECT … FOR UPDATE``), so a signing key registered by
two runtimes at once is stored once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables, standalone
from cryospy.functions.errors import Conflict, NotFound
from cryospy.functions.index.postgres import Sealer

Doc = dict[str, Any]
SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_devices (
    device bytea PRIMARY KEY,
    token bytea UNIQUE,
    doc bytea NOT NULL
);
"""


class PostgresDeviceStore:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes]):
        """``pool`` is closed by :meth:`close`; ``key`` the registry key's getter."""
        self._pool = pool
        self._sealer = Sealer(key)
        create_tables(pool, "registry", SCHEMA)

    def _device(self, device_id: str) -> bytes:
        return self._sealer.pseudonym("device", device_id)

    def _token(self, doc: Doc) -> bytes | None:
        token = doc.get("storage_token")
        return self._sealer.pseudonym("token", token) if token else None

    def _open(self, device: bytes, blob: bytes) -> Doc:
        doc: Doc = self._sealer.open(blob, b"registry", bytes(device))
        return doc

    def _seal(self, device: bytes, doc: Doc) -> bytes:
        return self._sealer.seal(doc, b"registry", device)

    def get(self, device_id: str) -> Doc | None:
        device = self._device(device_id)
        with standalone(self._pool) as conn:
            row = conn.execute("SELECT doc FROM registry_devices WHERE device = %s", (device,)).fetchone()
        return self._open(device, row[0]) if row else None

    def all(self) -> list[Doc]:
        with standalone(self._pool) as conn:
            rows = conn.execute("SELECT device, doc FROM registry_devices").fetchall()
        return [self._open(device, doc) for device, doc in rows]

    def by_token(self, token: str) -> str | None:
        with standalone(self._pool) as conn:
            row = conn.execute("SELECT device, doc FROM registry_devices WHERE token = %s",
                               (self._sealer.pseudonym("token", token),)).fetchone()
        return str(self._open(row[0], row[1])["device_id"]) if row else None

    def insert(self, doc: Doc) -> None:
        device = self._device(doc["device_id"])
        try:
            with self._pool.connection() as conn:
                conn.execute("INSERT INTO registry_devices (device, token, doc) VALUES (%s, %s, %s)",
                             (device, self._token(doc), self._seal(device, doc)))
        except psycopg.errors.UniqueViolation:
            if self.get(doc["device_id"]) is not None:
                raise Conflict(f"device {doc['device_id']!r} already exists (possibly retired); pick another id"
                               ) from None
            raise Conflict("that storage token is taken; draw another") from None

    def change(self, device_id: str, fn: Callable[[Doc], Doc]) -> Doc:
        device = self._device(device_id)
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT doc FROM registry_devices WHERE device = %s FOR UPDATE", (device,)).fetchone()
            if row is None:
                raise NotFound(f"no device {device_id!r}")
            doc = fn(self._open(device, row[0]))
            conn.execute("UPDATE registry_devices SET token = %s, doc = %s WHERE device = %s",
                         (self._token(doc), self._seal(device, doc), device))
        return doc

    def remove(self, device_id: str) -> None:
        with standalone(self._pool) as conn:
            if not conn.execute("DELETE FROM registry_devices WHERE device = %s",
                                (self._device(device_id),)).rowcount:
                raise NotFound(f"no device {device_id!r}")

    def clear(self) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM registry_devices")

    def close(self) -> None:
        self._pool.close()
