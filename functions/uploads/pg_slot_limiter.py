"""Upload slots per device per minute in PostgreSQL (``database_url``): one budget per camera for the whole
deployment, however many runtimes it asks.

The same token bucket as :class:`~cryospy.functions.uploads.slot_limiter.SlotLimiter` (the arithmetic is
:func:`~cryospy.functions.uploads.slot_limiter.spend`, shared), held to the same tests
(tests/unit/test_shared_contacts.py). Each slot is one transaction holding the camera's row
(``SELECT … FOR UPDATE``), so requests racing on several runtimes spend the bucket one at a time; times are
the database's clock, so runtimes whose clocks differ refill it alike. A slot is asked for once per clip, so
the round trip (well under a millisecond on a LAN) is small beside the upload it allows.

What the table shows: a keyed hash of the device id (the registry key's pseudonym, as ``registry_devices``)
and, sealed (AES-256-GCM, device hash bound in), the bucket: how many slots are left and when it was last
spent (close to a capture time, which the object keys in MinIO show anyway).
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables
from cryospy.functions.index.postgres import Sealer

from .slot_limiter import DEFAULT_PER_MINUTE, spend

SCHEMA = """
CREATE TABLE IF NOT EXISTS slot_buckets (
    device bytea PRIMARY KEY,
    bucket bytea
);
"""


class PostgresSlotLimiter:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], per_minute: int = DEFAULT_PER_MINUTE,
                 clock: Callable[[], float] | None = None):
        """``pool`` is closed by :meth:`close`; ``key`` the registry key's getter (infra/stores.py); ``clock``
        seconds since the epoch, the database's by default."""
        self._pool = pool
        self._sealer = Sealer(key)
        self.per_minute = per_minute
        self._clock = clock
        create_tables(pool, "slot_buckets", SCHEMA)

    def take(self, device_id: str) -> None:
        """Spend one slot of the device's budget, or raise TooManyRequests saying when to come back."""
        device = self._sealer.pseudonym("device", device_id)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO slot_buckets (device) VALUES (%s) ON CONFLICT DO NOTHING", (device,))
            row = conn.execute("SELECT bucket, extract(epoch FROM clock_timestamp()) FROM slot_buckets "
                               "WHERE device = %s FOR UPDATE", (device,)).fetchone()
            stored = self._sealer.open(row[0], b"slots", device) if row and row[0] is not None else None
            now = self._clock() if self._clock is not None else float(row[1]) if row else 0.0
            tokens, at = spend((float(stored[0]), float(stored[1])) if stored else None, now, self.per_minute,
                               device_id)   # raises when empty: the transaction rolls back, nothing written
            conn.execute("UPDATE slot_buckets SET bucket = %s WHERE device = %s",
                         (self._sealer.seal([tokens, at], b"slots", device), device))

    def close(self) -> None:
        self._pool.close()
