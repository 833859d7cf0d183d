"""Holds the deployment's keys for the running process: locked (public parts only) until a passphrase unlocks it.

Devices keep uploading while the vault is locked (presigning needs no private key); handlers that must open
a sealed object raise KeysLocked, and the dispatcher keeps their jobs pending until an admin unlocks.

A deployment made with ``cryospy setup --browser`` has no key store yet: the vault then *needs setup*. It is
locked in the same way, and :meth:`KeyVault.initialise` (first-run setup in the dashboard) creates the store
under the admin's new passphrase and unlocks it. It refuses once a store exists, so setup happens once.

The vault also answers who may do what: :meth:`KeyVault.login` opens one account's key slot, and while unlocked
the vault keeps the store's master key and the verified account records, re-reading them (without scrypt)
whenever the key-store file changes, so that an account removed or changed on the command line is seen at the
next request. Account changes from the dashboard go through the master key it keeps.

With several runtimes on one database the key store's authoritative copy is in PostgreSQL and the file is its
cache (a ``mirror``, infra/pg_documents.py): every log-in pulls the shared copy first, every change is written
through under its lock, and the runtime pulls it when another runtime's change is announced; the file changes,
so the accounts are re-read at the next request as for a change made on the command line.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryospy.common.accounts import ADMIN, MIN_PASSPHRASE_CHARS, Account, AccountError
from cryospy.common.file_mirror import FileMirror, mirror_errors_as
from cryospy.common.keys import (
    DeploymentPublicKey,
    KeyStore,
    KeyStoreError,
    KeyStoreExists,
    MasterKey,
    OpenedStore,
    UnlockedKeys,
)
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.errors import BadRequest, KeysLocked

log = logging.getLogger(__name__)
__all__ = ["MIN_PASSPHRASE_CHARS", "AccountExpired", "KeyVault", "SetupPending", "check_new_passphrase"]


class SetupPending(KeyStoreError):
    """The deployment has no key store yet, so there is no passphrase to check; finish first-run setup first."""


class AccountExpired(KeyStoreError):
    """The passphrase was right but the account's access has ended; an admin can give it a new expiry."""


def check_new_passphrase(passphrase: str, repeat: str) -> None:
    """The rules a new admin passphrase must meet; raises BadRequest naming the field at fault."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise BadRequest(f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters (it protects every "
                         "clip's key)", field="passphrase")
    if repeat != passphrase:
        raise BadRequest("the two passphrases differ; type the same passphrase twice", field="repeat")


class KeyVault:
    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 mirror: FileMirror | None = None):
        """``mirror``: the key store's shared copy when runtimes share a database (None: the file alone)."""
        self.path = path
        self.clock = clock   # when accounts expire is judged by this
        self.mirror = mirror
        if mirror is not None:
            mirror.pull()
        # Only a missing file means "not set up"; an unreadable one raises here, so setup never replaces it.
        self._store: KeyStore | None = KeyStore.load(path, mirror) if path.exists() else None
        self._unlocked: UnlockedKeys | None = None
        self._master: MasterKey | None = None
        self._accounts: dict[str, Account] = {}
        self._stamp: tuple[int, int, int] | None = None   # the key-store file the accounts were read from
        self._lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._unlock_listeners: list[Callable[[], None]] = []

    @property
    def locked(self) -> bool:
        return self._unlocked is None

    @property
    def needs_setup(self) -> bool:
        """True until a key store exists (a deployment created for first-run setup in the browser)."""
        return self._store is None

    def unlock(self, passphrase: str, account: str = ADMIN) -> None:
        """Raises the key store's WrongPassphrase on a bad passphrase, SetupPending if there is no store yet."""
        self.login(account, passphrase)

    def login(self, name: str, passphrase: str) -> Account:
        """Open ``name``'s key slot with ``passphrase``; the vault is unlocked afterwards (any account's slot
        unlocks the deployment's keys). A v1 key store is upgraded to slots on the admin's first login.
        Raises WrongPassphrase (also for an unknown name), AccountExpired, SetupPending."""
        store = self._require_store()
        stamp = self._file_stamp()
        if store.legacy and name == ADMIN:
            store.upgrade(passphrase)
            stamp = self._file_stamp()
        opened = store.open(passphrase, name)
        if opened.account.expired(self.clock()):
            raise AccountExpired(f"the account {name!r} expired at {utc_stamp(opened.account.expires)}"  # type: ignore[arg-type]
                                 "; ask an admin to extend it")
        self._opened(opened, stamp)
        return opened.account

    def _opened(self, opened: OpenedStore, stamp: tuple[int, int, int] | None) -> None:
        with self._lock:
            self._unlocked, self._master, self._accounts = opened.keys, opened.master, opened.accounts
            self._stamp = stamp
        self._unlocked_now()

    # -- accounts ----------------------------------------------------------------------------------------
    def account(self, name: str) -> Account | None:
        """The account as the key store now records it, or None (removed, or the vault is locked)."""
        self._refresh()
        return self._accounts.get(name)

    def accounts(self) -> list[Account]:
        self._refresh()
        return sorted(self._accounts.values(), key=lambda a: a.name)

    def add_account(self, account: Account, passphrase: str) -> None:
        self._change(lambda store, master: store.add_account(master, account, passphrase))

    def update_account(self, account: Account) -> None:
        self._change(lambda store, master: store.update_account(master, account))

    def set_passphrase(self, name: str, passphrase: str) -> None:
        self._change(lambda store, master: store.set_passphrase(master, name, passphrase))

    def remove_account(self, name: str) -> None:
        self._change(lambda store, master: store.remove_account(master, name))

    def _change(self, change: Callable[[KeyStore, MasterKey], None]) -> None:
        master = self._master
        if master is None:
            raise KeysLocked("accounts can be changed only while the deployment's keys are unlocked; log in again")
        with mirror_errors_as(AccountError):   # the shared copy cannot be had: the page says why
            change(self._require_store(), master)
        self._refresh()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def store(self) -> KeyStore:
        """The key store as it is now, for a change made outside :meth:`_change` (an account's own passphrase);
        with a mirror the change is written through to the shared copy."""
        return KeyStore.load(self.path, self.mirror)

    def refresh(self) -> None:
        """Re-read the accounts now if the key-store file changed (another runtime's change was pulled)."""
        self._refresh()

    def _refresh(self) -> None:
        """Re-read the accounts if the key-store file changed (atomic writes give it a new inode); a file that no
        longer opens with the master key leaves no account logged in."""
        master, stamp = self._master, self._file_stamp()
        if master is None or stamp == self._stamp:
            return
        opened: OpenedStore | None = None
        try:
            opened = KeyStore.load(self.path).open_with_master(master)
            accounts = opened.accounts
        except KeyStoreError as exc:
            log.error("the key store changed and no longer opens with the unlocked key (%s); every session ends",
                      exc)
            accounts = {}
        with self._lock:
            self._accounts, self._stamp = accounts, stamp
            if opened is not None and self.mirror is not None and self._unlocked is not None:
                # A key rotated on another runtime: its public key is the one to hand out from now on, and its
                # private key opens what cameras seal to it.
                self._store, self._unlocked = KeyStore.load(self.path, self.mirror), opened.keys

    def add_unlock_listener(self, listener: Callable[[], None]) -> None:
        """Called after every successful unlock (each log-in unlocks again): what needs the private keys to
        start, such as the channel settings sealed under the index key."""
        self._unlock_listeners.append(listener)

    def _unlocked_now(self) -> None:
        for listener in self._unlock_listeners:
            try:
                listener()
            except Exception:       # a listener's failure must not fail the log-in
                log.exception("an unlock listener failed")

    def initialise(self, passphrase: str, *, scrypt_n: int | None = None) -> None:
        """First-run setup: create the key store under ``passphrase`` and unlock it.

        Exactly one caller wins: concurrent calls are serialised here, and KeyStore.create links the file
        exclusively, so even a second process cannot overwrite a store. Losers get KeyStoreExists. ``scrypt_n``
        is for tests only (a cheaper KDF); the production default applies when it is None.
        """
        with self._setup_lock:
            if self._store is None and self.mirror is not None and (self.mirror.pull() or self.path.exists()):
                self.reload()   # another runtime of the deployment was set up meanwhile
            if self._store is not None:
                raise KeyStoreExists(f"the key store {self.path} already exists; log in with the admin passphrase")
            try:
                if scrypt_n is None:
                    store = KeyStore.create(self.path, passphrase)
                else:
                    store = KeyStore.create(self.path, passphrase, scrypt_n=scrypt_n, insecure_for_tests=True)
                if self.mirror is not None:
                    self._publish_new()
            except KeyStoreExists:
                self.reload()   # another process made it: this one now asks for the login as well
                raise
            opened = store.open(passphrase)
            with self._lock:
                self._store = store
        self._opened(opened, self._file_stamp())

    def _publish_new(self) -> None:
        """Put a key store just created into the shared copy. If another runtime's setup got there first, the
        pull replaced the new file with that one, and this setup fails as a second local one would."""
        assert self.mirror is not None
        if self.mirror.pull():
            raise KeyStoreExists("another runtime of this deployment finished first-run setup at the same moment; "
                                 "log in with the admin passphrase chosen there")

    def keys(self) -> UnlockedKeys:
        keys = self._unlocked
        if keys is None:
            raise KeysLocked("the deployment's private key is locked; unlock it with the admin passphrase "
                             "(log in to the dashboard, or start the runtime with --passphrase-file)")
        return keys

    def index_key(self) -> bytes:
        return self.keys().index_key

    def public_key(self) -> DeploymentPublicKey:
        store = self._store
        if store is None:
            raise KeysLocked("the deployment has no keys yet; finish first-run setup on the dashboard's /setup page")
        return store.current_public_key()

    def reload(self) -> None:
        """Re-read the key store file (after `cryospy keys rotate`); the unlocked state must be renewed."""
        with self._lock:
            self._store = KeyStore.load(self.path) if self.path.exists() else None
            self._unlocked, self._master, self._accounts = None, None, {}

    def _require_store(self) -> KeyStore:
        store = self._store
        if store is None and self.mirror is not None and self.mirror.pull():
            self.reload()   # another runtime of the deployment finished setup
            store = self._store
        if store is None:
            raise SetupPending(f"there is no key store at {self.path} yet: choose the admin passphrase on the "
                               "dashboard's /setup page (first-run setup) before logging in")
        return store
