"""The channel settings made on the dashboard, sealed at rest under the deployment's index key.

They hold the broker password, the push token and the webhook secret, so they never touch the disk in
plaintext: one file, ``runtime/channels.sealed``::

    b"CSCH1" | nonce (12 bytes) | AES-256-GCM(key, nonce, JSON, associated data b"CSCH1")
    key = HKDF-SHA256(index key, info b"cryospy dashboard channel settings v1")

A key of its own (derived, so nothing new to keep) means these bytes can never be confused with an index
shard or a dashboard page sealed under the index key itself. The index key only exists while the runtime is
unlocked, which is also when the admin pages can be reached; a runtime started locked reads the file at
the first unlock (log-in or ``--passphrase-file``) and runs the server.json channels until then.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from cryospy.common.file_mirror import FileMirror, MirrorError
from cryospy.common.sealed_json import SealedFileError, SealedJsonFile

from .errors import ChannelSettingsError

MAGIC = b"CSCH1"
_INFO = b"cryospy dashboard channel settings v1"


class StoredChannels:
    def __init__(self, path: Path, index_key: Callable[[], bytes], mirror: FileMirror | None = None) -> None:
        """``mirror``: the shared copy when runtimes share a database (docs/postgres.md)."""
        self.path = path
        self._file = SealedJsonFile(path, index_key, MAGIC, _INFO, mirror)   # index_key raises KeysLocked if locked

    def editing(self) -> AbstractContextManager[None]:
        """Hold the saved settings for a load-change-save (across runtimes when they share a database)."""
        return self._file.editing()

    def load(self) -> dict[str, Any]:
        """The sections saved from the dashboard ({} when none were)."""
        try:
            doc = self._file.load()
        except MirrorError as exc:
            raise ChannelSettingsError(str(exc)) from None
        except SealedFileError as exc:
            if exc.foreign:
                raise ChannelSettingsError(f"{self.path} is not a CryoSpy channel settings file; move it away and "
                                           "set the channels again on the dashboard") from None
            raise ChannelSettingsError(f"{exc}; move it away and set the channels again on the dashboard") from None
        if doc is None:
            return {}
        if not isinstance(doc, dict):
            raise ChannelSettingsError(f"{self.path} does not hold channel settings")
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        self._file.save(doc)
