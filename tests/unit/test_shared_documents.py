"""The documents several runtimes share through PostgreSQL (infra/pg_documents.py, docs/postgres.md): the key
store, second-factor enrolments and saved channels. A real PostgreSQL; each "runtime" here is a data directory
of its own with its own connection pool, as two runtime processes have."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyotp
import pytest

from cryospy.cli.main import main as cli_main
from cryospy.common.accounts import Account, AccountError
from cryospy.common.keys import KeyStore, KeyStoreError, WrongPassphrase
from cryospy.common.sealed_json import SealedJsonFile
from cryospy.functions.channels.stored import StoredChannels
from cryospy.functions.keyvault import KeyVault
from cryospy.infra.deployment import Deployment
from cryospy.infra.pg_documents import DocumentConflict, SharedDocumentError, SharedDocuments, SharedFile
from cryospy.infra.stores import KEYS, documents_key, open_shared_documents
from cryospy.web.second_factor import SecondFactor
from tests.conftest import PASSPHRASE, new_deployment
from tests.support import wait_for

ANNA, ANNA_PASS = "anna-neighbour", "anna's own long passphrase"


def _documents(url: str, key: bytes | None = None, recheck: float = 30.0) -> SharedDocuments:
    from cryospy.common.database import open_pool
    return SharedDocuments(open_pool(url, max_size=3), key or b"k" * 32, recheck_seconds=recheck)


@contextlib.contextmanager
def _two(url: str, key: bytes | None = None) -> Iterator[tuple[SharedDocuments, SharedDocuments]]:
    """Two processes' views of one database: each its own pool and writer id."""
    a, b = _documents(url, key), _documents(url, key)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_a_write_from_a_stale_version_is_refused(postgres) -> None:
    docs = _documents(postgres.fresh_url())
    try:
        assert docs.get("keys") is None and docs.version("keys") == 0
        assert docs.put("keys", b"first", 0) == 1
        with pytest.raises(DocumentConflict, match="changed the shared keys document at the same moment"):
            docs.put("keys", b"also first", 0)
        assert docs.put("keys", b"second", 1) == 2
        with pytest.raises(DocumentConflict, match="try again"):
            docs.put("keys", b"from version 1", 1)
        stored = docs.get("keys")
        assert stored is not None and (stored.version, stored.data) == (2, b"second")
    finally:
        docs.close()


def test_another_process_hears_a_change_and_its_own_is_not_echoed(postgres) -> None:
    heard_a: list[int] = []
    heard_b: list[int] = []
    with _two(postgres.fresh_url()) as (a, b):
        a.watch("channels", lambda: heard_a.append(a.version("channels")))
        b.watch("channels", lambda: heard_b.append(b.version("channels")))
        wait_for(lambda: heard_a == [0] and heard_b == [0], what="both listening (each checks once at start)")
        a.put("channels", b"saved on a", 0)
        wait_for(lambda: heard_b == [0, 1], what="b told of a's change")
        b.put("channels", b"saved on b", 1)
        wait_for(lambda: heard_a == [0, 2], what="a told of b's change")
        assert heard_b == [0, 1], "b's own write is not announced back to b"


def test_the_database_holds_no_account_name_no_slot_and_no_size_of_the_key_store(postgres, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    dep = new_deployment(tmp_path / "a")
    docs = _documents(url, documents_key(dep))
    try:
        store = KeyStore.load(dep.keys_path, SharedFile(docs, KEYS, dep.keys_path))   # seeds the database
        opened = store.open(PASSPHRASE)
        store.add_account(opened.master, Account(ANNA, "viewer", frozenset({"front-door"})), ANNA_PASS)
        plain = dep.keys_path.read_bytes()
        slots = json.loads(plain)["slots"]
        with psycopg.connect(url) as conn:
            (name, version, blob), = conn.execute("SELECT name, version, doc FROM shared_documents").fetchall()
        blob = bytes(blob)
        assert (name, version) == ("keys", 2)
        for secret in [ANNA.encode(), b"front-door", b"admin", b"scrypt", b"slots"] + [
                s[field].encode() for s in slots.values() for field in ("wrapped", "nonce")] + [
                _raw(s[field]) for s in slots.values() for field in ("wrapped", "nonce")] + [
                s["kdf"]["salt"].encode() for s in slots.values()]:
            assert secret not in blob
        assert (len(blob) - 1 - 12 - 16) % 4096 == 0, "padded: the size does not count the accounts"
        assert docs.get("keys").data == plain   # type: ignore[union-attr]
        other = _documents(url, os.urandom(32))
        try:
            with pytest.raises(SharedDocumentError, match="does not open with this deployment's key"):
                other.get("keys")
        finally:
            other.close()
    finally:
        docs.close()


def _raw(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Runtime:
    """One runtime's view: its own data directory (keys.json copied, as `cryospy runtime add` does) and pool."""

    def __init__(self, url: str, dep: Deployment, folder: Path):
        if folder != dep.data_dir:
            folder.mkdir()
            shutil.copy2(dep.keys_path, folder / "keys.json")
        self.path = folder / "keys.json"
        self.docs = _documents(url, documents_key(dep), recheck=3600)
        self.mirror = SharedFile(self.docs, KEYS, self.path)
        self.vault = KeyVault(self.path, mirror=self.mirror)
        self.docs.watch(KEYS, lambda: self.mirror.pull() and self.vault.refresh())   # as the runtime does

    def close(self) -> None:
        self.docs.close()


@contextlib.contextmanager
def _runtimes(url: str, tmp_path: Path) -> Iterator[tuple[_Runtime, _Runtime]]:
    """Runtime A (the first data directory) and B (its copy), both logged in as the admin."""
    dep = new_deployment(tmp_path / "a")
    a, b = _Runtime(url, dep, dep.data_dir), _Runtime(url, dep, tmp_path / "b")
    try:
        a.vault.login("admin", PASSPHRASE)
        b.vault.login("admin", PASSPHRASE)
        yield a, b
    finally:
        a.close()
        b.close()


def test_accounts_changed_on_one_runtime_apply_on_the_other_at_once(postgres, tmp_path: Path) -> None:
    with _runtimes(postgres.fresh_url(), tmp_path) as (a, b):
        a.vault.add_account(Account(ANNA, "viewer", frozenset({"front-door"})), ANNA_PASS)
        assert b.vault.login(ANNA, ANNA_PASS).cameras == frozenset({"front-door"})
        wait_for(lambda: b.vault.account(ANNA) is not None, what="b's accounts re-read")

        a.vault.remove_account(ANNA)
        wait_for(lambda: b.vault.account(ANNA) is None, what="the removed account's sessions end on b")
        with pytest.raises(WrongPassphrase):
            b.vault.login(ANNA, ANNA_PASS)
        assert b"anna" not in b.path.read_bytes(), "b's local copy follows the database"

        # Passphrase changed on b: the old one no longer opens a's key store either.
        b.vault.store().change_passphrase(PASSPHRASE, "a brand new admin passphrase")
        with pytest.raises(WrongPassphrase):
            a.vault.login("admin", PASSPHRASE)
        a.vault.login("admin", "a brand new admin passphrase")


def test_two_runtimes_adding_accounts_at_once_lose_neither(postgres, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    with _runtimes(url, tmp_path) as (a, b):
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def add(runtime: _Runtime, prefix: str) -> None:
            start.wait()
            try:
                for n in range(4):
                    runtime.vault.add_account(Account(f"{prefix}{n}", "viewer", frozenset({"cam"})), ANNA_PASS)
            except BaseException as exc:   # reported below
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(a, "from-a-")), threading.Thread(target=add, args=(b, "from-b-"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        expected = {"admin"} | {f"from-{r}-{n}" for r in "ab" for n in range(4)}
        assert {acc.name for acc in a.vault.store().open(PASSPHRASE).accounts.values()} == expected
        assert {acc.name for acc in b.vault.store().open(PASSPHRASE).accounts.values()} == expected
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT version FROM shared_documents WHERE name = 'keys'").fetchone()[0] == 9


def test_command_line_changes_write_through_to_the_database(postgres, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    dep = new_deployment(tmp_path / "a")
    (dep.data_dir / "server.json").write_text(json.dumps({"database_url": url}))
    b = _Runtime(url, dep, tmp_path / "b")
    try:
        b.vault.login("admin", PASSPHRASE)
        secret, new = tmp_path / "admin.pass", tmp_path / "anna.pass"
        secret.write_text(PASSPHRASE)
        new.write_text(ANNA_PASS)
        common = ["--data-dir", str(dep.data_dir), "--passphrase-file", str(secret)]
        assert cli_main(["accounts", "add", *common, "--name", ANNA, "--role", "admin",
                         "--new-passphrase-file", str(new)]) == 0
        assert b.vault.login(ANNA, ANNA_PASS).is_admin
        assert cli_main(["accounts", "remove", *common, "--name", ANNA]) == 0
        wait_for(lambda: b.vault.account(ANNA) is None, what="removed on the command line: gone on b")
        with pytest.raises(WrongPassphrase):
            b.vault.login(ANNA, ANNA_PASS)

        before = b.vault.public_key()
        assert cli_main(["keys", "rotate", "--data-dir", str(dep.data_dir), "--passphrase-file", str(secret)]) == 0
        wait_for(lambda: b.vault.public_key() != before, what="the rotated key handed out by b")
        b.vault.keys().private_key(b.vault.public_key().key_id)   # b opens what cameras now seal to that key
    finally:
        b.close()


def test_a_second_factor_enrolled_on_one_runtime_is_asked_on_the_other_and_a_code_works_once(
        postgres, tmp_path: Path) -> None:
    index_key = os.urandom(32)
    path_a, path_b = tmp_path / "a" / "second-factor.sealed", tmp_path / "b" / "second-factor.sealed"
    now = [1_800_000_000.0]
    with _two(postgres.fresh_url()) as (docs_a, docs_b):
        a = SecondFactor(path_a, lambda: index_key, lambda: now[0], SharedFile(docs_a, "second-factor", path_a))
        b = SecondFactor(path_b, lambda: index_key, lambda: now[0], SharedFile(docs_b, "second-factor", path_b))
        secret = a.new_secret()
        totp = pyotp.TOTP(secret)
        recovery = a.confirm("admin", secret, totp.at(now[0]))
        assert b.enrolled("admin") and b.recovery_left("admin") == 10
        now[0] += 30
        assert b.check("admin", totp.at(now[0])) == "code"
        with pytest.raises(Exception, match="used already"):
            a.check("admin", totp.at(now[0]))   # the step b accepted is spent on a too
        assert a.check("admin", recovery[0]) == "recovery"
        with pytest.raises(Exception, match="wrong code"):
            b.check("admin", recovery[0])
        assert path_a.read_bytes()[:5] == b"CS2F1", "the file keeps its own sealing under the index key"


def test_saved_channels_reach_the_other_runtime(postgres, tmp_path: Path) -> None:
    url, index_key = postgres.fresh_url(), os.urandom(32)
    with _two(url) as (docs_a, docs_b):
        a = StoredChannels(tmp_path / "a" / "c.sealed", lambda: index_key,
                           SharedFile(docs_a, "channels", tmp_path / "a" / "c.sealed"))
        b = StoredChannels(tmp_path / "b" / "c.sealed", lambda: index_key,
                           SharedFile(docs_b, "channels", tmp_path / "b" / "c.sealed"))
        with a.editing():
            a.save({"mqtt": {"enabled": True, "password": "broker-secret"}})
        assert b.load() == {"mqtt": {"enabled": True, "password": "broker-secret"}}
        with psycopg.connect(url) as conn:
            assert b"broker-secret" not in bytes(conn.execute("SELECT doc FROM shared_documents").fetchone()[0])
        # A save held on b waits for a's; neither section is lost.
        with b.editing():
            b.save({**b.load(), "webhook": {"enabled": False}})
        with a.editing():
            a.save({**a.load(), "push": {"enabled": False}})
        assert set(b.load()) == {"mqtt", "webhook", "push"}


def test_embedded_files_have_no_mirror(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path / "a")
    from cryospy.infra.server_config import load_server_config
    assert open_shared_documents(dep, load_server_config(dep.path("server.json"))) is None
    plain = SealedJsonFile(tmp_path / "x.sealed", lambda: b"i" * 32, b"MAGIC", b"info")
    with plain.editing():
        plain.save({"a": 1})
    assert plain.load() == {"a": 1}


def test_a_key_store_rolled_back_in_the_database_is_refused_by_running_runtimes(postgres, tmp_path: Path) -> None:
    url = postgres.fresh_url()
    with _runtimes(url, tmp_path) as (a, b):
        a.vault.add_account(Account(ANNA, "viewer", frozenset({"front-door"})), ANNA_PASS)
        with psycopg.connect(url) as conn:
            old = conn.execute("SELECT version, doc FROM shared_documents WHERE name = 'keys'").fetchone()
        a.vault.remove_account(ANNA)
        b.vault.login("admin", PASSPHRASE)   # b has the newest version
        with psycopg.connect(url) as conn:
            # The old blob under the new number does not open: the version is sealed in.
            conn.execute("UPDATE shared_documents SET doc = %s WHERE name = 'keys'", (old[1],))
            conn.commit()
            with pytest.raises(SharedDocumentError, match="does not open"):
                b.docs.get("keys")
            # The old blob with its old number (a restored backup): refused, with what to do.
            conn.execute("UPDATE shared_documents SET version = %s WHERE name = 'keys'", (old[0],))
            conn.commit()
        for runtime in (a, b):
            for _ in range(2):   # and still after a refused change
                with pytest.raises(AccountError, match="went back"):
                    runtime.vault.add_account(Account("x", "viewer", frozenset({"cam"})), ANNA_PASS)
                with pytest.raises(KeyStoreError, match=r"went back from version 3 to 2.*restart the runtimes"):
                    runtime.vault.login(ANNA, ANNA_PASS)


def test_a_database_that_is_down_fails_a_login_with_what_to_do(postgres, tmp_path: Path) -> None:
    dep = new_deployment(tmp_path / "a")
    runtime = _Runtime(postgres.fresh_url(), dep, dep.data_dir)
    runtime.docs.close()   # as if the database went away: the pool is gone
    with pytest.raises(KeyStoreError, match="cannot reach the database for the shared keys document"):
        runtime.vault.login("admin", PASSPHRASE)
