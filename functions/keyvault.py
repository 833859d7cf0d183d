"""Holds the deployment's keys for the running process: locked (public parts only) until a passphrase unlocks it.

Devices keep uploading while the vault is locked (presigning needs no private key); handlers that must open
a sealed object raise KeysLocked, and the dispatcher keeps their jobs pending until an admin unlocks.

A deployment made with ``cryospy setup --browser`` has no key store yet: the vault then *needs setup*. It is
locked in the same way, and :meth:`KeyVault.initialise` (first-run setup in the dashboard) creates the store
under the admin's new passphrase and unlocks it. It refuses once a store exists, so setup happens once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from cryospy.common.keys import DeploymentPublicKey, KeyStore, KeyStoreError, KeyStoreExists, UnlockedKeys
from cryospy.functions.errors import BadRequest, KeysLocked

log = logging.getLogger(__name__)
MIN_PASSPHRASE_CHARS = 10
"""The admin passphrase wraps every private key; the CLI prompt and first-run setup both enforce this minimum."""


class SetupPending(KeyStoreError):
    """The deployment has no key store yet, so there is no passphrase to check; finish first-run setup first."""


def check_new_passphrase(passphrase: str, repeat: str) -> None:
    """The rules a new admin passphrase must meet; raises BadRequest naming the field at fault."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise BadRequest(f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters (it protects every "
                         "clip's key)", field="passphrase")
    if repeat != passphrase:
        raise BadRequest("the two passphrases differ; type the same passphrase twice", field="repeat")


class KeyVault:
    def __init__(self, path: Path):
        self.path = path
        # Only a missing file means "not set up"; an unreadable one raises here, so setup never replaces it.
        self._store: KeyStore | None = KeyStore.load(path) if path.exists() else None
        self._unlocked: UnlockedKeys | None = None
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

    def unlock(self, passphrase: str) -> None:
        """Raises the key store's WrongPassphrase on a bad passphrase, SetupPending if there is no store yet."""
        keys = self._require_store().unlock(passphrase)
        with self._lock:
            self._unlocked = keys
        self._unlocked_now()

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
            if self._store is not None:
                raise KeyStoreExists(f"the key store {self.path} already exists; log in with the admin passphrase")
            try:
                if scrypt_n is None:
                    store = KeyStore.create(self.path, passphrase)
                else:
                    store = KeyStore.create(self.path, passphrase, scrypt_n=scrypt_n, insecure_for_tests=True)
            except KeyStoreExists:
                self.reload()   # another process made it: this one now asks for the login as well
                raise
            keys = store.unlock(passphrase)
            with self._lock:
                self._store, self._unlocked = store, keys
        self._unlocked_now()

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
            self._unlocked = None

    def _require_store(self) -> KeyStore:
        store = self._store
        if store is None:
            raise SetupPending(f"there is no key store at {self.path} yet: choose the admin passphrase on the "
                               "dashboard's /setup page (first-run setup) before logging in")
        return store
