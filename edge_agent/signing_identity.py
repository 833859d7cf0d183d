"""The device's signing identity: the Ed25519 key every clip header is signed with, and its registration.

Why the agent makes its own key: a device created on the dashboard must never have key material pass through
a browser, so the server only learns the public half, from the agent, the first time it asks (trust on first
use). The private key is made once, written atomically to a 0600 file (``signing_key_file``, by default
``<spool_dir>/signing-key``) and reused at every start; losing it means enrolling the device again, exactly
like losing the ``signing_key`` of a config written by ``cryospy devices create``.

Registration runs as its own loop beside recording: clips are sealed and spooled from the first second, and
only the uploader waits for :attr:`KeyRegistration.registered` (the server refuses upload slots until it knows
the key). Network trouble is retried with backoff, forever. A refusal (409: the server holds another key for
this device) stops the agent with :class:`SigningKeyConflict`; clips already spooled stay on disk.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cryospy.common.keys import (
    KeyStoreError,
    generate_device_signing_key,
    load_signing_key,
    save_signing_key,
    signing_key_from_text,
    verify_key_fingerprint,
    verify_key_to_text,
)

from .api_client import Retryable
from .config import AgentConfig
from .errors import ConfigError, SigningKeyConflict, UploadError

log = logging.getLogger(__name__)


class KeyRegistrar(Protocol):
    def register_signing_key(self, public_key_text: str) -> dict[str, object]: ...


def fingerprint(key: Ed25519PrivateKey) -> str:
    return verify_key_fingerprint(key.public_key())


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``, made and stored (0600, atomically, never overwriting) if there is none yet."""
    if not path.exists():
        key = generate_device_signing_key()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            save_signing_key(path, key)
        except KeyStoreError:
            pass    # another process made it between our look and our write: use theirs
        except OSError as exc:
            raise ConfigError(f"cannot store this device's new signing key in {path} ({exc}); make the directory "
                              "writable for the agent or set signing_key_file to a private, writable path") from None
        else:
            log.info("made this device's signing key in %s (fingerprint %s)", path, fingerprint(key))
            return key
    try:
        return load_signing_key(path)
    except KeyStoreError as exc:
        raise ConfigError(f"the signing key file {path} is unusable: {exc}. If it is lost for good, delete the "
                          "device on the server, create it again and start the agent with the new config") from None


def device_signing_key(config: AgentConfig) -> Ed25519PrivateKey:
    """The key from the config's ``signing_key``, else from (or made in) ``signing_key_file``."""
    if config.signing_key:
        try:
            return signing_key_from_text(config.signing_key)
        except Exception as exc:   # the key parser raises several types; all mean "unusable"
            raise ConfigError(f"signing_key in the agent config is not valid: {exc}") from None
    assert config.signing_key_file is not None   # parse_config sets it whenever signing_key is absent
    return load_or_create_signing_key(config.signing_key_file)


class KeyRegistration:
    """A loop that registers the public key once, then ends; see the module docstring."""

    def __init__(self, client: KeyRegistrar, key: Ed25519PrivateKey, stop: threading.Event,
                 retry_cap_s: float = 300.0) -> None:
        self.client = client
        self.public_text = verify_key_to_text(key.public_key())
        self.fingerprint = fingerprint(key)
        self.stop = stop
        self.retry_cap_s = max(1.0, retry_cap_s)
        self.registered = threading.Event()
        self.refusal: SigningKeyConflict | None = None
        self.attempts = 0

    def register_once(self) -> None:
        """One attempt. Raises Retryable/UploadError to try again later, SigningKeyConflict to give up."""
        self.attempts += 1
        answer = self.client.register_signing_key(self.public_text)
        theirs = answer.get("signing_key_fingerprint")
        if theirs not in (None, self.fingerprint):
            raise UploadError(f"the server reports fingerprint {theirs} for this device's key, not {self.fingerprint}")
        if answer.get("registered") == "now":
            log.info("registered this device's signing key with the server (fingerprint %s); check that the "
                     "dashboard shows the same fingerprint", self.fingerprint)
        else:
            log.info("the server knows this device's signing key (fingerprint %s)", self.fingerprint)
        self.registered.set()

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set() and not self.registered.is_set():
            try:
                self.register_once()
                return
            except SigningKeyConflict as exc:
                self.refusal = exc
                log.error("%s. This agent's key has fingerprint %s. Stopping: its clips stay in the spool.",
                          exc, self.fingerprint)
                self.stop.set()
                return
            except (Retryable, UploadError) as exc:
                reason = str(exc)
            except Exception as exc:   # a bug must not end registration for the months the agent runs
                log.exception("registering the signing key failed unexpectedly")
                reason = f"unexpected error: {exc}"
            failures += 1
            delay = min(self.retry_cap_s, 0.5 * 2 ** min(failures, 20)) * (0.5 + random.random() / 2)
            log.warning("signing key not registered yet (%s); recording goes on, uploads wait; retrying in %.1fs",
                        reason, delay)
            self.stop.wait(delay)
