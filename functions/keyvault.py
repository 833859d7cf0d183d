"""Holds the deployment's keys for the running process: locked (public parts only) until a passphrase unlocks it.

Devices keep uploading while the vault is locked (presigning needs no private key); handlers that must open
a sealed object raise KeysLocked, and the dispatcher keeps their jobs pending until an admin unlocks.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cryospy.common.keys import DeploymentPublicKey, KeyStore, UnlockedKeys

from .errors import KeysLocked


class KeyVault:
    def __init__(self, path: Path):
        self.path = path
        self._store = KeyStore.load(path)
        self._unlocked: UnlockedKeys | None = None
        self._lock = threading.Lock()
        self._unlock_listeners: list[object] = []

    @property
    def locked(self) -> bool:
        return self._unlocked is None

    def unlock(self, passphrase: str) -> None:
        """Raises the key store's WrongPassphrase on a bad passphrase."""
        keys = self._store.unlock(passphrase)
        with self._lock:
            self._unlocked = keys

    def keys(self) -> UnlockedKeys:
        keys = self._unlocked
        if keys is None:
            raise KeysLocked("the deployment's private key is locked; unlock it with the admin passphrase "
                             "(log in to the dashboard, or start the runtime with --passphrase-file)")
        return keys

    def index_key(self) -> bytes:
        return self.keys().index_key

    def public_key(self) -> DeploymentPublicKey:
        return self._store.current_public_key()

    def reload(self) -> None:
        """Re-read the key store file (after `cryospy keys rotate`); the unlocked state must be renewed."""
        with self._lock:
            self._store = KeyStore.load(self.path)
            self._unlocked = None
