"""The deployment key store and device signing keys.

Key hierarchy (``docs/sealed-format.md`` and ``docs/accounts.md`` have the full picture)::

    account passphrase ──scrypt (own salt)──► slot key ──AES-256-GCM──► master key      (one slot per account)
    master key ──AES-256-GCM──► secret part of keystore.json
                                  ├── X25519 private keys by key id (one current)
                                  ├── server Ed25519 signing key
                                  └── index key (encrypts the local index at rest)
    master key ──HKDF──► accounts MAC over every account record (role, cameras, expiry) and its slot's digest
    X25519 public key (current) ──given to devices──► wraps each object's fresh data key
    device Ed25519 key (made at enrolment, stays on the device) ──signs──► every clip header

The store is one JSON file. Its public part (current key id, public keys, the server's verify key, the KDF parameters)
is readable without the passphrase so a locked runtime can still hand out the deployment key and verify signatures; it
is bound to the secret part as associated data, so editing it — say, swapping in an attacker's public key — makes the
next unlock fail instead of silently redirecting new footage. Accounts are key slots, as in disk encryption:
adding or removing one rewraps nothing but its own slot, and a v1 file (one passphrase) reads as the slot of the
account ``admin`` until the first change rewrites it as v2.

Exceptions::

    CryoSpyError
    └── KeyStoreError
        ├── WrongPassphrase     the passphrase does not open the store (or the file was edited)
        ├── KeyStoreLocked      an operation needs secrets and the runtime has not been unlocked yet
        ├── UnknownKeyId        an object is sealed to a key id this store does not hold
        ├── KeyStoreExists      refusing to overwrite an existing store
        ├── KeyStoreCorrupt     unreadable, inconsistent or unsupported key-store file
        └── BadKeyText          a key given as text does not parse
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryospy.common.accounts import ADMIN, MAX_ACCOUNTS, Account, AccountError, check_removal
from cryospy.common.atomic import write_atomic
from cryospy.common.errors import CryoSpyError
from cryospy.common.file_mirror import FileMirror, MirrorError

STORE_FORMAT = "cryospy-keystore/v2"
LEGACY_FORMAT = "cryospy-keystore/v1"   # one passphrase; still read (as the "admin" account), rewritten as v2
DEFAULT_SCRYPT_N = 2**16
"""64 MiB and ~0.2 s per unlock: strong against offline guessing yet fine on a small home server."""
MIN_SCRYPT_N = 2**15
MAX_SCRYPT_N = 2**22  # bounds the memory a hostile file can make unlock() allocate
SCRYPT_R = 8
SCRYPT_P = 1
PUBLIC_PREFIX = "cs1-x25519"
VERIFY_PREFIX = "cs1-ed25519-pub"
SIGNING_PREFIX = "cs1-ed25519-sec"
_RAW = serialization.Encoding.Raw


class KeyStoreError(CryoSpyError):
    """Base for key-store and key-text failures; the message names the file or value and what to do."""

    exit_code = 2


class WrongPassphrase(KeyStoreError):
    pass


class KeyStoreLocked(KeyStoreError):
    pass


class UnknownKeyId(KeyStoreError):
    pass


class KeyStoreExists(KeyStoreError):
    pass


class KeyStoreCorrupt(KeyStoreError):
    pass


class BadKeyText(KeyStoreError):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str, size: int | None, what: str) -> bytes:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadKeyText(f"{what} is not valid base64url: {text[:16]!r}…; copy it again without line breaks") from exc
    if size is not None and len(raw) != size:
        raise BadKeyText(f"{what} decodes to {len(raw)} bytes, expected {size}; copy the whole value again")
    return raw


def key_id_for(public: X25519PublicKey) -> str:
    """Key ids are fingerprints, so a key id can never name two different keys by accident."""
    digest = hashlib.sha256(b"CryoSpy deployment key id\n" + public.public_bytes(_RAW, serialization.PublicFormat.Raw))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class DeploymentPublicKey:
    """The key devices seal to. Its text form ``cs1-x25519:<key id>:<base64url>`` goes into device config."""

    key_id: str
    public: X25519PublicKey

    @classmethod
    def from_public(cls, public: X25519PublicKey) -> DeploymentPublicKey:
        return cls(key_id_for(public), public)

    @property
    def raw(self) -> bytes:
        return self.public.public_bytes(_RAW, serialization.PublicFormat.Raw)

    def to_text(self) -> str:
        return f"{PUBLIC_PREFIX}:{self.key_id}:{_b64(self.raw)}"

    @classmethod
    def from_text(cls, text: str) -> DeploymentPublicKey:
        """Parse and check the text form; the key id must be the key's fingerprint (catches copy-paste mix-ups)."""
        parts = text.strip().split(":")
        if len(parts) != 3 or parts[0] != PUBLIC_PREFIX:
            raise BadKeyText(
                f"not a deployment public key: {text[:24]!r}…; expected '{PUBLIC_PREFIX}:<key "
                "id>:<base64url>' as printed by the server"
            )
        public = X25519PublicKey.from_public_bytes(_unb64(parts[2], 32, "deployment public key"))
        key = cls.from_public(public)
        if key.key_id != parts[1]:
            raise BadKeyText(
                f"deployment public key text says key id {parts[1]!r} but the key's fingerprint is "
                f"{key.key_id!r}; the text was edited or mixed from two keys — copy it again from the server"
            )
        return key

    def __str__(self) -> str:
        return self.to_text()


def generate_device_signing_key() -> Ed25519PrivateKey:
    """A new device identity, made on the device at enrolment; only its public half ever leaves the device."""
    return Ed25519PrivateKey.generate()


def signing_key_to_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return f"{SIGNING_PREFIX}:{_b64(raw)}"


def signing_key_from_text(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        _unb64(_strip_prefix(text, SIGNING_PREFIX, "signing key"), 32, "signing key")
    )


def verify_key_to_text(key: Ed25519PublicKey) -> str:
    return f"{VERIFY_PREFIX}:{_b64(key.public_bytes(_RAW, serialization.PublicFormat.Raw))}"


def verify_key_from_text(text: str) -> Ed25519PublicKey:
    raw = _unb64(_strip_prefix(text, VERIFY_PREFIX, "verify key"), 32, "verify key")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise BadKeyText("the verify key is not a valid Ed25519 public key; copy it again from the device") from exc


def verify_key_fingerprint(key: Ed25519PublicKey) -> str:
    """A human-comparable name for a device's public key (``ab12-cd34-…``, eight groups: the first 128 bits of
    SHA-256 over the raw key). The agent logs it and the dashboard shows it, so the admin can check that the
    key a device registered on first use is the one their camera made. 128 bits because an export's manifest
    is checked against it: a forger must not be able to make a key with the same fingerprint."""
    digest = hashlib.sha256(key.public_bytes(_RAW, serialization.PublicFormat.Raw)).hexdigest()[:32]
    return "-".join(digest[i : i + 4] for i in range(0, 32, 4))


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    text = text.strip()
    if text.startswith(prefix + ":"):
        return text[len(prefix) + 1 :]
    hint = ""
    if prefix == VERIFY_PREFIX and text.startswith(SIGNING_PREFIX + ":"):
        hint = " — this is a secret signing key: register only its public half"
    raise BadKeyText(f"not a {what}: expected text starting with '{prefix}:'{hint}")


def save_signing_key(path: str | os.PathLike[str], key: Ed25519PrivateKey) -> None:
    """Store a device signing key as text in a 0600 file, atomically, refusing to replace an existing identity."""
    _write_atomic(Path(path), (signing_key_to_text(key) + "\n").encode("ascii"), exclusive=True)


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    try:
        text = Path(path).read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"cannot read the device signing key at {path}: {exc}; re-enrol the device") from exc
    return signing_key_from_text(text)


@runtime_checkable
class KeyRing(Protocol):
    """Anything that can produce the deployment private key for a key id (``UnlockedKeys``, or a test double)."""

    def private_key(self, key_id: str) -> X25519PrivateKey: ...


class UnlockedKeys(KeyRing):
    """The secrets of an unlocked store; hand this to code that opens or server-seals objects, nothing more."""

    __slots__ = ("_private", "current_public_key", "index_key", "server_signing_key")

    def __init__(
        self,
        *,
        private_keys: Mapping[str, X25519PrivateKey],
        current_key_id: str,
        server_signing_key: Ed25519PrivateKey,
        index_key: bytes,
    ) -> None:
        self._private = dict(private_keys)
        self.current_public_key = DeploymentPublicKey(current_key_id, self._private[current_key_id].public_key())
        self.server_signing_key = server_signing_key
        self.index_key = index_key

    def private_key(self, key_id: str) -> X25519PrivateKey:
        try:
            return self._private[key_id]
        except KeyError:
            raise UnknownKeyId(
                f"this key store holds no private key {key_id!r} (it has "
                f"{', '.join(sorted(self._private))}); the object belongs to another deployment or an older "
                "key store backup"
            ) from None

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._private)

    def __repr__(self) -> str:
        return f"UnlockedKeys(current={self.current_public_key.key_id!r}, keys={len(self._private)})"


class MasterKey:
    """The store's master key: what every account's slot wraps, and what the secrets are encrypted under.

    The runtime keeps it while unlocked (like the private keys themselves) so that an admin's session can add,
    change and remove accounts without typing the passphrase again; it never leaves the process."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise ValueError("a master key is 32 bytes")
        self._raw = raw

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32))

    def __repr__(self) -> str:
        return "MasterKey(…)"


@dataclass(frozen=True)
class _Public:
    current_key_id: str
    public_keys: dict[str, DeploymentPublicKey]
    server_verify_key: Ed25519PublicKey

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "current_key_id": self.current_key_id,
            "public_keys": {kid: key.to_text() for kid, key in sorted(self.public_keys.items())},
            "server_verify_key": verify_key_to_text(self.server_verify_key),
        }

    def aad(self, legacy_kdf: dict[str, Any] | None = None) -> bytes:
        doc = self.to_json()
        if legacy_kdf is not None:   # a v1 file bound its KDF parameters and format marker in as well
            doc |= {"format": LEGACY_FORMAT, "kdf": legacy_kdf}
        return _canonical(doc)


@dataclass(frozen=True)
class _Slot:
    """One account's wrapped copy of the master key: its own scrypt salt and parameters, the account's name
    bound in as associated data (a slot moved under another name does not open)."""

    kdf: dict[str, Any]
    nonce: bytes
    wrapped: bytes

    @classmethod
    def wrap(cls, name: str, passphrase: bytes, master: MasterKey, scrypt_n: int) -> _Slot:
        kdf, slot_key = _fresh_kdf(passphrase, scrypt_n)
        nonce = os.urandom(12)
        return cls(kdf, nonce, AESGCM(slot_key).encrypt(nonce, master._raw, _slot_aad(name, kdf)))

    def unwrap(self, name: str, passphrase: bytes) -> MasterKey | None:
        try:
            return MasterKey(AESGCM(_derive(passphrase, self.kdf)).decrypt(self.nonce, self.wrapped,
                                                                           _slot_aad(name, self.kdf)))
        except InvalidTag:
            return None

    def to_json(self) -> dict[str, Any]:
        return {"kdf": self.kdf, "nonce": _b64(self.nonce), "wrapped": _b64(self.wrapped)}

    def digest(self) -> str:
        return hashlib.sha256(_canonical(self.to_json())).hexdigest()


@dataclass(frozen=True)
class _Document:
    """A parsed key-store file. ``legacy_kdf`` is set for a v1 file (one passphrase): it reads as one "admin"
    slot, and the first write turns it into a v2 file."""

    public: _Public
    secret_nonce: bytes
    secret_ciphertext: bytes
    slots: dict[str, _Slot]
    accounts: dict[str, Account]
    mac: bytes
    legacy_kdf: dict[str, Any] | None = None


@dataclass(frozen=True)
class OpenedStore:
    """What a right passphrase gives: the keys, the account it belongs to, and every account (verified)."""

    keys: UnlockedKeys
    account: Account
    accounts: dict[str, Account]
    master: MasterKey


class KeyStore:
    """The deployment's key-store file. ``load`` gives the public part; ``open``/``unlock`` need an account's
    passphrase; account changes need the master key an opened store carries."""

    def __init__(self, path: Path, document: _Document, mirror: FileMirror | None = None) -> None:
        self.path = path
        self._doc = document
        self._mirror = mirror

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        insecure_for_tests: bool = False,
    ) -> KeyStore:
        """Make new deployment keys and write them to ``path`` (0600, atomic) with one account, ``admin``,
        whose slot ``passphrase`` opens; never overwrites an existing file.

        ``scrypt_n`` below ``MIN_SCRYPT_N`` is accepted only with ``insecure_for_tests=True`` so a fast test setting
        cannot leak into a deployment unnoticed.
        """
        path = Path(path)
        _check_scrypt_n(scrypt_n, insecure_for_tests)
        if path.exists():
            raise KeyStoreExists(
                f"a key store already exists at {path}; refusing to overwrite it (that would make every "
                "sealed object unreadable). Use `cryospy keys rotate` for a new key, or choose another path"
            )
        deployment = X25519PrivateKey.generate()
        signing = Ed25519PrivateKey.generate()
        current = DeploymentPublicKey.from_public(deployment.public_key())
        master = MasterKey.generate()
        slot = _Slot.wrap(ADMIN, _passphrase_bytes(passphrase), master, scrypt_n)
        public = _Public(current.key_id, {current.key_id: current}, signing.public_key())
        secrets = UnlockedKeys(
            private_keys={current.key_id: deployment},
            current_key_id=current.key_id,
            server_signing_key=signing,
            index_key=os.urandom(32),
        )
        admin = Account(ADMIN, "admin", created=datetime.now(UTC))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = _write_store(path, public, secrets, master, {ADMIN: slot}, {ADMIN: admin}, exclusive=True)
        return cls(path, document)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mirror: FileMirror | None = None) -> KeyStore:
        """Read the public part. Nothing secret is decrypted; call :meth:`open` for that.

        ``mirror``: the shared copy when several runtimes share a database (infra/pg_documents.py). Every open
        first pulls it into the file, and every change is made under its lock and written through to it."""
        path = Path(path)
        _pull(mirror)
        return cls(path, _parse_document(path, _read_json(path)), mirror)

    def _pull(self) -> None:
        _pull(self._mirror)

    @property
    def legacy(self) -> bool:
        """A v1 file (one passphrase, no accounts yet); :meth:`upgrade` or any change makes it v2."""
        return self._doc.legacy_kdf is not None

    def current_public_key(self) -> DeploymentPublicKey:
        return self._doc.public.public_keys[self._doc.public.current_key_id]

    def public_keys(self) -> list[DeploymentPublicKey]:
        return [self._doc.public.public_keys[kid] for kid in sorted(self._doc.public.public_keys)]

    def server_verify_key(self) -> Ed25519PublicKey:
        return self._doc.public.server_verify_key

    def open(self, passphrase: str | bytes, account: str = ADMIN) -> OpenedStore:
        """Unwrap the account's slot with its passphrase and decrypt the secrets (re-reading the file).

        Raises WrongPassphrase for a wrong passphrase *or* an unknown account (one message for both, and the
        same scrypt cost), KeyStoreCorrupt if the accounts or keys were edited."""
        self._pull()
        self._doc = _parse_document(self.path, _read_json(self.path))
        return _open(self.path, self._doc, account, _passphrase_bytes(passphrase))

    def unlock(self, passphrase: str | bytes, account: str = ADMIN) -> UnlockedKeys:
        """The deployment's secrets for ``account``'s passphrase (see :meth:`open`)."""
        return self.open(passphrase, account).keys

    def open_with_master(self, master: MasterKey) -> OpenedStore:
        """Re-read the file and open it with a master key held in memory (no scrypt): how a running process
        notices accounts changed by the command line. The returned ``account`` is the first admin."""
        self._pull()
        self._doc = _parse_document(self.path, _read_json(self.path))
        keys, accounts = _open_secrets(self.path, self._doc, master)
        admin = next(a for a in sorted(accounts.values(), key=lambda a: a.name) if a.is_admin)
        return OpenedStore(keys, admin, accounts, master)

    def upgrade(self, passphrase: str | bytes) -> bool:
        """Turn a v1 file into a v2 file whose one slot, ``admin``, opens with the same passphrase (a fresh master
        key; no sealed object is touched). Returns False if the file was already v2."""
        with self._locked() as document:
            if document.legacy_kdf is None:
                self._doc = document
                return False
            self._doc = _upgraded(self.path, document, _passphrase_bytes(passphrase))[0]
            return True

    def rotate(self, passphrase: str | bytes, account: str = ADMIN) -> DeploymentPublicKey:
        """Make a new key pair the current one; old private keys stay, so every existing object stays readable.

        Needs an admin account's passphrase. Every slot wraps the master key, not the key pairs, so every
        account keeps working without being touched. Devices keep sealing to the old key until they fetch the
        new public key; both work meanwhile.
        """
        with self._locked() as document:
            document, opened = _opened_for_write(self.path, document, account, _passphrase_bytes(passphrase))
            if not opened.account.is_admin:
                raise KeyStoreError(f"{account!r} is a viewer account; rotating the deployment key needs an admin's "
                                    "passphrase")
            secrets = opened.keys
            fresh = X25519PrivateKey.generate()
            new = DeploymentPublicKey.from_public(fresh.public_key())
            private = {kid: secrets.private_key(kid) for kid in secrets.key_ids} | {new.key_id: fresh}
            rotated = UnlockedKeys(
                private_keys=private,
                current_key_id=new.key_id,
                server_signing_key=secrets.server_signing_key,
                index_key=secrets.index_key,
            )
            public = replace(document.public, current_key_id=new.key_id,
                             public_keys=document.public.public_keys | {new.key_id: new})
            self._doc = _write_store(self.path, public, rotated, opened.master, document.slots, document.accounts,
                                     exclusive=False)
        return new

    def change_passphrase(self, old: str | bytes, new: str | bytes, account: str = ADMIN) -> None:
        """Re-wrap one account's slot under a new passphrase (fresh salt). Every other slot stays byte for byte
        as it was; no sealed object is touched or re-encrypted."""
        new_bytes = _passphrase_bytes(new)
        with self._locked() as document:
            document, opened = _opened_for_write(self.path, document, account, _passphrase_bytes(old))
            self._doc = self._write_slots(document, opened, {account: _Slot.wrap(
                account, new_bytes, opened.master, int(document.slots[account].kdf["n"]))})

    # -- accounts (need the master key an opened store carries) ------------------------------------------
    def add_account(self, master: MasterKey, account: Account, passphrase: str | bytes,
                    *, scrypt_n: int | None = None) -> None:
        """Add ``account`` (checked by :func:`accounts.new_account`) with a slot ``passphrase`` opens. Nothing
        else changes: no other slot, no sealed object. ``scrypt_n`` defaults to the strongest existing slot's."""
        secret = _passphrase_bytes(passphrase)
        with self._locked() as document:
            opened = self._with_master(document, master)
            if account.name in opened.accounts:
                raise AccountError(f"an account named {account.name!r} already exists; choose another name",
                                   "name")
            n = scrypt_n or max(int(s.kdf["n"]) for s in document.slots.values())
            self._doc = self._write_slots(document, opened, {account.name: _Slot.wrap(account.name, secret,
                                                                                      master, n)},
                                          {account.name: account})

    def update_account(self, master: MasterKey, account: Account) -> None:
        """Replace an existing account's record (cameras, expiry); its slot stays as it is."""
        with self._locked() as document:
            opened = self._with_master(document, master)
            if account.name not in opened.accounts:
                raise AccountError(f"there is no account named {account.name!r}", "name")
            self._doc = self._write_slots(document, opened, {}, {account.name: account})

    def set_passphrase(self, master: MasterKey, name: str, passphrase: str | bytes) -> None:
        """An admin sets another account's passphrase (it was forgotten): only that slot is re-wrapped."""
        secret = _passphrase_bytes(passphrase)
        with self._locked() as document:
            opened = self._with_master(document, master)
            if name not in opened.accounts:
                raise AccountError(f"there is no account named {name!r}", "name")
            self._doc = self._write_slots(document, opened, {name: _Slot.wrap(
                name, secret, master, int(document.slots[name].kdf["n"]))})

    def remove_account(self, master: MasterKey, name: str) -> None:
        """Destroy the account's slot and record (refused for the last admin). The file is rewritten without
        them, so the account's passphrase no longer opens this file."""
        with self._locked() as document:
            opened = self._with_master(document, master)
            check_removal(name, opened.accounts)
            slots = {n: s for n, s in document.slots.items() if n != name}
            accounts = {n: a for n, a in opened.accounts.items() if n != name}
            self._doc = _write_store(self.path, document.public, opened.keys, master, slots, accounts,
                                     exclusive=False)

    def _with_master(self, document: _Document, master: MasterKey) -> OpenedStore:
        if document.legacy_kdf is not None:
            raise KeyStoreError(f"key store {self.path} is in the old one-passphrase format; log in (or run "
                                "`cryospy accounts list`) with the admin passphrase once to upgrade it")
        keys, accounts = _open_secrets(self.path, document, master)
        return OpenedStore(keys, accounts[ADMIN] if ADMIN in accounts else next(iter(accounts.values())),
                           accounts, master)

    def _write_slots(self, document: _Document, opened: OpenedStore, slots: dict[str, _Slot],
                     accounts: dict[str, Account] | None = None) -> _Document:
        return _write_store(self.path, document.public, opened.keys, opened.master, document.slots | slots,
                            opened.accounts | (accounts or {}), exclusive=False)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Document]:
        """Serialise read-modify-write cycles so two admins changing the store at once cannot lose a change: on
        this machine by a lock file, across runtimes by the mirror's lock (the change is then written through)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._mirror.editing() if self._mirror is not None else contextlib.nullcontext():
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield _parse_document(self.path, _read_json(self.path))
            finally:
                os.close(fd)

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r}, current={self._doc.public.current_key_id!r})"


def _pull(mirror: FileMirror | None) -> None:
    """The shared copy into the file; a copy that cannot be had is a KeyStoreError (a login says why)."""
    if mirror is None:
        return
    try:
        mirror.pull()
    except MirrorError as exc:
        raise KeyStoreError(str(exc)) from exc


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        passphrase = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if not passphrase:
        raise KeyStoreError("the passphrase is empty; choose a long passphrase (several words) and keep it safe")
    return passphrase


def _check_scrypt_n(n: int, insecure_for_tests: bool) -> None:
    if not isinstance(n, int) or n < 2 or n & (n - 1) or n > MAX_SCRYPT_N:
        raise ValueError(f"scrypt_n must be a power of two up to {MAX_SCRYPT_N}, got {n!r}")
    if n < MIN_SCRYPT_N and not insecure_for_tests:
        raise ValueError(
            f"scrypt_n {n} is too weak for a deployment; use at least {MIN_SCRYPT_N} (default "
            f"{DEFAULT_SCRYPT_N}). Lower values are for tests only (insecure_for_tests=True)"
        )


def _derive(passphrase: bytes, kdf: Mapping[str, Any]) -> bytes:
    n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
    salt = _unb64(str(kdf["salt"]), None, "scrypt salt")
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=256 * r * (n + p + 2) + (1 << 20))


def _fresh_kdf(passphrase: bytes, scrypt_n: int) -> tuple[dict[str, Any], bytes]:
    """New scrypt parameters (fresh salt) and the store key they derive from ``passphrase``."""
    kdf = {"name": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(os.urandom(16))}
    return kdf, _derive(passphrase, kdf)


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _slot_aad(name: str, kdf: Mapping[str, Any]) -> bytes:
    return _canonical({"format": STORE_FORMAT, "slot": name, "kdf": dict(kdf)})


def _accounts_mac(master: MasterKey, slots: Mapping[str, _Slot], accounts: Mapping[str, Account]) -> bytes:
    """Authenticates every account record together with a digest of its slot, under a key derived from the
    master key: adding, removing or changing a record, or putting back an older slot, breaks it."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cryospy key store accounts v2").derive(
        master._raw)
    body = {name: account.to_json() | {"slot": slots[name].digest() if name in slots else None}
            for name, account in accounts.items()}
    return hmac.new(mac_key, _canonical(body), hashlib.sha256).digest()


def _write_store(path: Path, public: _Public, secrets: UnlockedKeys, master: MasterKey, slots: dict[str, _Slot],
                 accounts: dict[str, Account], *, exclusive: bool) -> _Document:
    """Encrypt the secrets under the master key with the public part as associated data, authenticate the
    accounts, and write the file; returns what was written."""
    if set(slots) != set(accounts):
        raise AssertionError("every account has exactly one slot")
    raw_private = {
        kid: _b64(
            secrets.private_key(kid).private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        )
        for kid in secrets.key_ids
    }
    secret_json = json.dumps(
        {
            "x25519": raw_private,
            "server_signing_key": signing_key_to_text(secrets.server_signing_key),
            "index_key": _b64(secrets.index_key),
        },
        sort_keys=True,
    ).encode("utf-8")
    nonce = os.urandom(12)
    ciphertext = AESGCM(master._raw).encrypt(nonce, secret_json, public.aad())
    mac = _accounts_mac(master, slots, accounts)
    document = public.to_json() | {
        "secret": {"cipher": "AES-256-GCM", "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)},
        "slots": {name: slot.to_json() for name, slot in sorted(slots.items())},
        "accounts": {name: account.to_json() for name, account in sorted(accounts.items())},
        "accounts_mac": _b64(mac),
    }
    _write_atomic(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"), exclusive=exclusive)
    return _Document(public, nonce, ciphertext, dict(slots), dict(accounts), mac)


def _wrong_passphrase(path: Path) -> WrongPassphrase:
    return WrongPassphrase(
        f"wrong passphrase for key store {path} (or its file was edited); try again. A lost passphrase "
        "cannot be recovered: unless another account's passphrase opens the store, the footage sealed to "
        "these keys stays unreadable"
    )


def _open(path: Path, document: _Document, name: str, passphrase: bytes) -> OpenedStore:
    if document.legacy_kdf is not None:
        store_key = _derive(passphrase, document.legacy_kdf)   # scrypt runs for any name: same cost
        master = MasterKey(store_key) if name == ADMIN else None
    else:
        slot = document.slots.get(name)
        if slot is None:
            # Same cost as a real slot, so the time taken does not tell whether the account exists.
            decoy = next(iter(document.slots.values()))
            _derive(passphrase, decoy.kdf | {"salt": _b64(os.urandom(16))})
            master = None
        else:
            master = slot.unwrap(name, passphrase)
    if master is None:
        raise _wrong_passphrase(path)
    keys, accounts = _open_secrets(path, document, master)
    return OpenedStore(keys, accounts[name], accounts, master)


def _open_secrets(path: Path, document: _Document, master: MasterKey) -> tuple[UnlockedKeys, dict[str, Account]]:
    try:
        plain = AESGCM(master._raw).decrypt(document.secret_nonce, document.secret_ciphertext,
                                            document.public.aad(document.legacy_kdf))
    except InvalidTag:
        raise _wrong_passphrase(path) from None
    if document.legacy_kdf is None and not hmac.compare_digest(
            _accounts_mac(master, document.slots, document.accounts), document.mac):
        raise KeyStoreCorrupt(f"key store {path}: its accounts were edited outside CryoSpy (a role, camera list, "
                              "expiry or slot does not match what CryoSpy wrote); restore the file from a backup")
    try:
        data = json.loads(plain)
        private = {
            kid: X25519PrivateKey.from_private_bytes(_unb64(text, 32, "private key"))
            for kid, text in data["x25519"].items()
        }
        secrets = UnlockedKeys(
            private_keys=private,
            current_key_id=document.public.current_key_id,
            server_signing_key=signing_key_from_text(data["server_signing_key"]),
            index_key=_unb64(data["index_key"], 32, "index key"),
        )
    except (KeyError, TypeError, ValueError, BadKeyText) as exc:
        raise KeyStoreCorrupt(f"key store {path} decrypts but its secrets are malformed; restore a backup") from exc
    public = document.public
    mismatched = [
        kid
        for kid, key in public.public_keys.items()
        if kid not in private or DeploymentPublicKey.from_public(private[kid].public_key()) != key
    ]
    if mismatched or secrets.server_signing_key.public_key() != public.server_verify_key:
        which = ", ".join(mismatched) or "server signing key"
        raise KeyStoreCorrupt(f"key store {path}: public and private keys disagree ({which}); restore a backup")
    return secrets, dict(document.accounts)


def _upgraded(path: Path, document: _Document, passphrase: bytes) -> tuple[_Document, OpenedStore]:
    """A v1 document rewritten as v2: a fresh master key (the v1 store key came straight from the passphrase),
    the same passphrase in the ``admin`` slot with the file's scrypt cost, the same keys."""
    assert document.legacy_kdf is not None
    old = _open(path, document, ADMIN, passphrase)
    master = MasterKey.generate()
    slots = {ADMIN: _Slot.wrap(ADMIN, passphrase, master, int(document.legacy_kdf["n"]))}
    accounts = {ADMIN: Account(ADMIN, "admin", created=datetime.now(UTC))}
    new = _write_store(path, document.public, old.keys, master, slots, accounts, exclusive=False)
    return new, OpenedStore(old.keys, accounts[ADMIN], accounts, master)


def _opened_for_write(path: Path, document: _Document, name: str,
                      passphrase: bytes) -> tuple[_Document, OpenedStore]:
    """Open ``document`` for a change with an account's passphrase, upgrading a v1 file first."""
    if document.legacy_kdf is not None:
        if name != ADMIN:
            raise _wrong_passphrase(path)
        return _upgraded(path, document, passphrase)
    return document, _open(path, document, name, passphrase)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise KeyStoreError(
            f"no key store at {path}: set up the deployment first, or point CryoSpy at the right key-store path"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyStoreCorrupt(f"cannot read key store {path}: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyStoreCorrupt(f"key store {path} is not valid JSON ({exc}); restore it from a backup") from exc
    if not isinstance(document, dict) or document.get("format") not in (STORE_FORMAT, LEGACY_FORMAT):
        raise KeyStoreCorrupt(f"{path} is not a {STORE_FORMAT} key store; check the path or upgrade CryoSpy")
    return document


def _parse_kdf(kdf: Any) -> dict[str, Any]:
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt" or set(kdf) != {"name", "n", "r", "p", "salt"}:
        raise ValueError("only scrypt key derivation is supported")
    _check_scrypt_n(kdf["n"], insecure_for_tests=True)
    if not (isinstance(kdf["r"], int) and 1 <= kdf["r"] <= 32 and isinstance(kdf["p"], int) and 1 <= kdf["p"] <= 16):
        raise ValueError("scrypt r or p is out of range")
    return dict(kdf)


def _parse_document(path: Path, document: dict[str, Any]) -> _Document:
    try:
        public_keys = {kid: DeploymentPublicKey.from_text(text) for kid, text in document["public_keys"].items()}
        if any(key.key_id != kid for kid, key in public_keys.items()):
            raise ValueError("a public key is filed under the wrong key id")
        current = document["current_key_id"]
        if current not in public_keys:
            raise ValueError(f"current key id {current!r} has no public key")
        public = _Public(current, public_keys, verify_key_from_text(document["server_verify_key"]))
        secret = document["secret"]
        nonce = _unb64(secret["nonce"], 12, "secret nonce")
        ciphertext = _unb64(secret["ciphertext"], None, "secret ciphertext")
        if document["format"] == LEGACY_FORMAT:
            return _Document(public, nonce, ciphertext, {}, {ADMIN: Account(ADMIN, "admin")}, b"",
                             legacy_kdf=_parse_kdf(document["kdf"]))
        slots = {str(name): _Slot(_parse_kdf(s["kdf"]), _unb64(s["nonce"], 12, "slot nonce"),
                                  _unb64(s["wrapped"], 48, "wrapped master key"))
                 for name, s in document["slots"].items()}
        accounts = {str(name): Account.from_json(str(name), doc) for name, doc in document["accounts"].items()}
        if not slots or set(slots) != set(accounts) or len(slots) > MAX_ACCOUNTS:
            raise ValueError("the slots and the accounts do not match one to one")
        return _Document(public, nonce, ciphertext, slots, accounts, _unb64(document["accounts_mac"], 32, "MAC"))
    except (KeyError, TypeError, AttributeError, ValueError, KeyStoreError) as exc:
        raise KeyStoreCorrupt(
            f"key store {path} is malformed ({exc}); restore it from a backup"
        ) from exc


def _write_atomic(path: Path, data: bytes, *, exclusive: bool) -> None:
    """A crash leaves either the old file or the new one, never a torn key store (0600, fsynced)."""
    try:
        write_atomic(path, data, exclusive=exclusive)
    except FileExistsError:
        raise KeyStoreExists(f"{path} already exists; refusing to overwrite it") from None
