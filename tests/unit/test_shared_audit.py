"""The audit log several runtimes share in PostgreSQL (infra/pg_audit.py, docs/audit.md): one linear chain of
every runtime's entries, each naming its runtime; still tamper-evident; the database sees no kind, account or
runtime. A real PostgreSQL and a real key store."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from cryospy.common.database import open_pool
from cryospy.common.keys import KeyStore
from cryospy.functions.audit.actor import Actor
from cryospy.functions.audit.log import AuditLog
from cryospy.infra.pg_audit import PostgresAuditLines
from tests.conftest import PASSPHRASE, new_deployment

EACH = 15


def _log(url: str, keys_path: Path, local: Path, runtime: str) -> AuditLog:
    store = KeyStore.load(keys_path)
    unlocked = store.unlock(PASSPHRASE)
    lines = PostgresAuditLines(open_pool(url, max_size=2), url, local)
    return AuditLog(local, store.current_public_key, lambda: unlocked, store.server_verify_key, store=lines,
                    runtime=runtime)


def test_two_runtimes_append_to_one_linear_chain_that_still_shows_tampering(postgres, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    dep = new_deployment(tmp_path / "a")
    # Runtime A had a log of its own before the database: it is copied in and the chain goes on from it.
    own = AuditLog(dep.path("runtime", "audit.log"), KeyStore.load(dep.keys_path).current_public_key,
                   lambda: KeyStore.load(dep.keys_path).unlock(PASSPHRASE),
                   KeyStore.load(dep.keys_path).server_verify_key)
    own.record("login", Actor("admin", "dashboard", "10.0.0.9"))
    a = _log(url, dep.keys_path, dep.path("runtime", "audit.log"), "host:/srv/a")
    b = _log(url, dep.keys_path, tmp_path / "b" / "audit.log", "host:/srv/b")
    try:
        start = threading.Barrier(2)

        def burst(log: AuditLog, who: str) -> None:
            start.wait()
            for i in range(EACH):
                log.record("device.settings", Actor(who, "dashboard", "10.0.0.1"), device=f"cam-{i}")

        threads = [threading.Thread(target=burst, args=(a, "anna")), threading.Thread(target=burst, args=(b, "bert"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert a.write_error == b.write_error == ""
        check = a.check()
        assert check.ok and check.entries == 1 + 2 * EACH, check
        assert b.check().ok, "b's own head is in the shared chain"
        entries = b.entries()
        assert entries[0].kind == "login" and entries[0].runtime == ""   # from a's file, before the database
        by_runtime = {e.runtime for e in entries[1:]}
        assert by_runtime == {"host:/srv/a", "host:/srv/b"}
        assert all(e.account == ("anna" if e.runtime.endswith("/a") else "bert") for e in entries[1:])

        with psycopg.connect(url) as conn:
            raw = "\n".join(r[0] for r in conn.execute("SELECT line FROM audit_log ORDER BY n"))
            for clear in ("device.settings", "anna", "bert", "/srv/a", "10.0.0.1", "cam-3"):
                assert clear not in raw
            # The database's operator edits one entry: every runtime's check names it.
            line = conn.execute("SELECT line FROM audit_log WHERE n = 7").fetchone()[0]
            conn.execute("UPDATE audit_log SET line = %s WHERE n = 7", (line.replace('"box":"', '"box":"A'),))
            conn.commit()
        for log in (a, b):
            bad = log.check()
            assert not bad.ok and bad.first_bad == 7, bad
        # Put back, then cut the newest entry: the runtime that wrote it notices.
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE audit_log SET line = %s WHERE n = 7", (line,))
            conn.execute("DELETE FROM audit_log WHERE n = (SELECT max(n) FROM audit_log)")
            conn.commit()
        writer = a if entries[-1].runtime == "host:/srv/a" else b
        assert "were removed" in writer.check().problem
    finally:
        a.close()
        b.close()


def test_a_shared_log_whose_database_is_down_is_reported_not_crashed(postgres, tmp_path: Path) -> None:
    dep = new_deployment(tmp_path / "a")
    log = _log(postgres.fresh_url(), dep.keys_path, dep.path("runtime", "audit.log"), "host:/srv/a")
    log.record("login", Actor("admin", "dashboard", "10.0.0.9"))
    log.close()   # the pool is gone, as when the database cannot be reached
    log.record("logout", Actor("admin", "dashboard", "10.0.0.9"))
    assert "could not be written" in log.write_error
    check = log.check()
    assert not check.ok and "cannot be read" in check.problem and "check that PostgreSQL runs" in check.problem
