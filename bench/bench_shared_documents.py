"""What sharing the key store through PostgreSQL costs: a login's extra check, and an account change.

    python bench/bench_shared_documents.py [--pulls 1000] [--changes 20]

Why: with ``database_url`` every login first asks the database whether the key store changed (one indexed query
when it did not), and every account change is written through under a lock. This measures both against the
file alone. The key store uses the tests' cheap scrypt setting, so the change figures are the overhead around
scrypt, not a production login. PostgreSQL is started for the run as the tests start it
(tests/postgres_server.py), fsync on, on loopback.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests.*: the server and deployment we measure

from cryospy.common.accounts import Account
from cryospy.common.database import open_pool
from cryospy.functions.keyvault import KeyVault
from cryospy.infra.pg_documents import SharedDocuments, SharedFile
from cryospy.infra.stores import KEYS, documents_key
from tests.conftest import PASSPHRASE, new_deployment
from tests.postgres_server import start_for_bench, stop_for_bench


def _changes(vault: KeyVault, count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        vault.add_account(Account(f"viewer-{i}", "viewer", frozenset({"cam"})), "a long enough passphrase")
    return (time.perf_counter() - started) / count * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulls", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-documents-"))
    server = start_for_bench(fsync=True)
    try:
        shared_dep, file_dep = new_deployment(tmp / "shared"), new_deployment(tmp / "file")
        docs = SharedDocuments(open_pool(server.fresh_url(), max_size=3), documents_key(shared_dep))
        mirror = SharedFile(docs, KEYS, shared_dep.keys_path)
        shared, alone = KeyVault(shared_dep.keys_path, mirror=mirror), KeyVault(file_dep.keys_path)
        shared.login("admin", PASSPHRASE)
        alone.login("admin", PASSPHRASE)
        started = time.perf_counter()
        for _ in range(args.pulls):
            mirror.pull()
        pull = (time.perf_counter() - started) / args.pulls * 1000
        print(f"login's check for a changed key store: {pull:.3f} ms (mean of {args.pulls})")
        print(f"account added, file alone: {_changes(alone, args.changes):.1f} ms; written through to PostgreSQL: "
              f"{_changes(shared, args.changes):.1f} ms (mean of {args.changes}, test scrypt setting)")
        docs.close()
    finally:
        stop_for_bench(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
