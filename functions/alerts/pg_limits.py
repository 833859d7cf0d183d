"""Alert rate limits in PostgreSQL (``database_url``): one mail per device and kind per interval across every
runtime of the deployment, not per runtime.

The same claim/release contract as :class:`~cryospy.functions.alerts.limits.AlertLimits` (tests hold both to
it: tests/unit/test_shared_stores.py). A claim is one transaction holding the row (``SELECT … FOR UPDATE``),
so two runtimes claiming at once cannot both win.

What the table shows: nothing but an opaque slot per device and kind (a keyed hash of both, under the
registry's key as in :mod:`cryospy.functions.devices.pg_device_store`) and, sealed, when its last alert went
out. Neither the kind nor the time is in clear: "a motion alert for this camera at 14:02" is per-clip
metadata the index seals too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from cryospy.common.database import create_tables
from cryospy.functions.index.postgres import Sealer

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_limits (
    slot bytea PRIMARY KEY,
    at bytea
);
"""


class PostgresAlertLimits:
    def __init__(self, pool: ConnectionPool, key: Callable[[], bytes], clock: Callable[[], float] = time.time):
        self._pool = pool
        self._sealer = Sealer(key)
        self._clock = clock
        create_tables(pool, "alert_limits", SCHEMA)

    def _slot(self, device_id: str, kind: str) -> bytes:
        return self._sealer.pseudonym("alert", f"{device_id}\0{kind}")

    def claim(self, device_id: str, kind: str, min_interval_s: float) -> bool:
        now, slot = self._clock(), self._slot(device_id, kind)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO alert_limits (slot) VALUES (%s) ON CONFLICT DO NOTHING", (slot,))
            row = conn.execute("SELECT at FROM alert_limits WHERE slot = %s FOR UPDATE", (slot,)).fetchone()
            if row is not None and row[0] is not None and now - float(self._sealer.open(row[0], b"alert", slot)) \
                    < min_interval_s:
                return False
            conn.execute("UPDATE alert_limits SET at = %s WHERE slot = %s",
                         (self._sealer.seal(now, b"alert", slot), slot))
            return True

    def release(self, device_id: str, kind: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM alert_limits WHERE slot = %s", (self._slot(device_id, kind),))

    def close(self) -> None:
        self._pool.close()
