"""The audit log in PostgreSQL: one hash chain of every runtime's entries (``database_url``, docs/audit.md).

Each runtime of a deployment records its own logins and admin actions; with several runtimes the log must
still be one chain, or an admin reads half of what happened. One table::

    audit_log (n bigint PRIMARY KEY, line text)

``line`` is exactly the line the file would hold (cryospy/common/audit_chain.py): position, previous hash, the
entry sealed to the deployment's public key, its chain hash and, while unlocked, the server signature. So the
database's operator sees what the disk's operator sees of the file: how many entries there are, hashes and
ciphertext; not the kind, time, account, address or runtime (all inside the box).

An append takes a transaction-scoped advisory lock, reads the last line and inserts the next, so the chain is
linear whichever runtime writes (the primary key refuses a second entry at one position besides). The first
runtime to use an empty table copies in its own ``runtime/audit.log`` as it stands, so its history stays in the
chain; other runtimes' older files stay where they are.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from cryospy.common.audit_chain import GENESIS, parse_line
from cryospy.common.database import create_tables, redacted
from cryospy.functions.audit.log import AuditFile, AuditUnavailable, Make

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    n bigint PRIMARY KEY,
    line text NOT NULL
);
"""
_LOCK = zlib.crc32(b"cryospy audit append")


class PostgresAuditLines:
    def __init__(self, pool: ConnectionPool, url: str, local: Path):
        """``pool`` is closed by :meth:`close`; ``local`` is this runtime's own audit file, copied in when the
        table is empty."""
        self._pool = pool
        self.where = f"the database {redacted(url)}"
        create_tables(pool, "audit", SCHEMA)
        self._adopt(local)

    def _adopt(self, local: Path) -> None:
        lines = AuditFile(local).read()
        if not lines:
            return
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            if conn.execute("SELECT 1 FROM audit_log LIMIT 1").fetchone() is not None:
                return
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO audit_log (n, line) VALUES (%s, %s)", list(enumerate(lines)))
        log.info("copied %d entries of %s into the shared audit log", len(lines), local)

    def read(self) -> list[str]:
        try:
            with self._pool.connection() as conn:
                return [row[0] for row in conn.execute("SELECT line FROM audit_log ORDER BY n")]
        except (psycopg.Error, PoolTimeout) as exc:
            raise AuditUnavailable(f"the audit log in {self.where} cannot be read ({exc}); check that PostgreSQL "
                                   "runs") from None

    def append(self, make: Make) -> tuple[int, str]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            row = conn.execute("SELECT n, line FROM audit_log ORDER BY n DESC LIMIT 1").fetchone()
            n, prev = (0, GENESIS) if row is None else (int(row[0]) + 1, _hash_of(row[1]))
            text, digest = make(n, prev)
            conn.execute("INSERT INTO audit_log (n, line) VALUES (%s, %s)", (n, text))
        return n, digest

    def close(self) -> None:
        self._pool.close()


def _hash_of(text: str) -> str:
    """The hash the next entry chains to: the last line's, as written (a damaged line: chain on from the start
    value, as the file does; the check names the damaged line)."""
    try:
        return parse_line(text).hash
    except ValueError:
        return GENESIS
