"""The deployment key store and device signing keys.

Key hierarchy (``docs/sealed-format.md`` has the full picture)::

    admin passphrase ──scrypt──► store key ──AES-256-GCM──► secret part of keystore.json
                                                              ├── X25519 private keys by key id (one current)
                                                              ├── server Ed25519 signing key
                                                              └── index key (encrypts the local index at rest)
    X25519 public key (current) ──given to devices──► wraps each object's fresh data key
    device Ed25519 key (made at enrolment, stays on the device) ──signs──► every clip header

The store is one JSON file. Its public part (current key id, public keys, the server's verify key, the KDF parameters)
is readable without the passphrase so a locked runtime can still hand out the deployment key and verify signatures; it
is bound to the secret part as associated data, so editing it — say, swapping in an attacker's public key — makes the
next unlock fail instead of silently redirecting new footage.

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
import json
import os
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.common.atomic import write_atomic
from cryospy.common.errors import CryoSpyError

STORE_FORMAT = "cryospy-keystore/v1"
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


@dataclass(frozen=True)
class _Public:
    current_key_id: str
    public_keys: dict[str, DeploymentPublicKey]
    server_verify_key: Ed25519PublicKey
    kdf: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STORE_FORMAT,
            "current_key_id": self.current_key_id,
            "public_keys": {kid: key.to_text() for kid, key in sorted(self.public_keys.items())},
            "server_verify_key": verify_key_to_text(self.server_verify_key),
            "kdf": self.kdf,
        }

    def aad(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")


class KeyStore:
    """The deployment's key-store file. ``load`` gives the public part; ``unlock`` needs the admin passphrase."""

    def __init__(self, path: Path, public: _Public) -> None:
        self.path = path
        self._public = public

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes,
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        insecure_for_tests: bool = False,
    ) -> KeyStore:
        """Make new deployment keys and write them to ``path`` (0600, atomic); never overwrites an existing file.

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
        kdf, store_key = _fresh_kdf(_passphrase_bytes(passphrase), scrypt_n)
        public = _Public(current.key_id, {current.key_id: current}, signing.public_key(), kdf)
        secrets = UnlockedKeys(
            private_keys={current.key_id: deployment},
            current_key_id=current.key_id,
            server_signing_key=signing,
            index_key=os.urandom(32),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_store(path, public, secrets, store_key, exclusive=True)
        return cls(path, public)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyStore:
        """Read the public part. Nothing secret is decrypted; call :meth:`unlock` for that."""
        path = Path(path)
        return cls(path, _parse_public(path, _read_json(path)))

    def current_public_key(self) -> DeploymentPublicKey:
        return self._public.public_keys[self._public.current_key_id]

    def public_keys(self) -> list[DeploymentPublicKey]:
        return [self._public.public_keys[kid] for kid in sorted(self._public.public_keys)]

    def server_verify_key(self) -> Ed25519PublicKey:
        return self._public.server_verify_key

    def unlock(self, passphrase: str | bytes) -> UnlockedKeys:
        """Decrypt the secrets; raises WrongPassphrase, or KeyStoreCorrupt if they do not match the public part."""
        document = _read_json(self.path)
        self._public = _parse_public(self.path, document)
        return _unlock(self.path, document, self._public, _passphrase_bytes(passphrase))[0]

    def rotate(self, passphrase: str | bytes) -> DeploymentPublicKey:
        """Make a new key pair the current one; old private keys stay, so every existing object stays readable.

        Devices keep sealing to the old key until they fetch the new public key; both work meanwhile.
        """
        with self._locked() as (document, public):
            secrets, store_key = _unlock(self.path, document, public, _passphrase_bytes(passphrase))
            fresh = X25519PrivateKey.generate()
            new = DeploymentPublicKey.from_public(fresh.public_key())
            private = {kid: secrets.private_key(kid) for kid in secrets.key_ids} | {new.key_id: fresh}
            rotated = UnlockedKeys(
                private_keys=private,
                current_key_id=new.key_id,
                server_signing_key=secrets.server_signing_key,
                index_key=secrets.index_key,
            )
            public = replace(public, current_key_id=new.key_id, public_keys=public.public_keys | {new.key_id: new})
            _write_store(self.path, public, rotated, store_key, exclusive=False)
            self._public = public
        return new

    def change_passphrase(self, old: str | bytes, new: str | bytes) -> None:
        """Re-wrap the secrets under a new passphrase (fresh salt); no sealed object is touched or re-encrypted."""
        new_bytes = _passphrase_bytes(new)
        with self._locked() as (document, public):
            secrets, _ = _unlock(self.path, document, public, _passphrase_bytes(old))
            kdf, store_key = _fresh_kdf(new_bytes, int(public.kdf["n"]))
            public = replace(public, kdf=kdf)
            _write_store(self.path, public, secrets, store_key, exclusive=False)
            self._public = public

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[dict[str, Any], _Public]]:
        """Serialise read-modify-write cycles so two admins rotating at once cannot lose a key."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            document = _read_json(self.path)
            yield document, _parse_public(self.path, document)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"KeyStore({str(self.path)!r}, current={self._public.current_key_id!r})"


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


def _write_store(path: Path, public: _Public, secrets: UnlockedKeys, store_key: bytes, *, exclusive: bool) -> None:
    """Encrypt the secrets under ``store_key`` with the public part as associated data, and write the file."""
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
    ciphertext = AESGCM(store_key).encrypt(nonce, secret_json, public.aad())
    document = public.to_json() | {
        "secret": {"cipher": "AES-256-GCM", "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}
    }
    _write_atomic(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"), exclusive=exclusive)


def _unlock(path: Path, document: dict[str, Any], public: _Public, passphrase: bytes) -> tuple[UnlockedKeys, bytes]:
    try:
        secret = document["secret"]
        nonce = _unb64(secret["nonce"], 12, "secret nonce")
        ciphertext = _unb64(secret["ciphertext"], None, "secret ciphertext")
    except (KeyError, TypeError, BadKeyText) as exc:
        raise KeyStoreCorrupt(f"key store {path} has no readable secret part; restore it from a backup") from exc
    store_key = _derive(passphrase, public.kdf)
    try:
        plain = AESGCM(store_key).decrypt(nonce, ciphertext, public.aad())
    except InvalidTag:
        raise WrongPassphrase(
            f"wrong passphrase for key store {path} (or its file was edited); try again. A lost passphrase "
            "cannot be recovered: the footage sealed to these keys stays unreadable"
        ) from None
    try:
        data = json.loads(plain)
        private = {
            kid: X25519PrivateKey.from_private_bytes(_unb64(text, 32, "private key"))
            for kid, text in data["x25519"].items()
        }
        secrets = UnlockedKeys(
            private_keys=private,
            current_key_id=public.current_key_id,
            server_signing_key=signing_key_from_text(data["server_signing_key"]),
            index_key=_unb64(data["index_key"], 32, "index key"),
        )
    except (KeyError, TypeError, ValueError, BadKeyText) as exc:
        raise KeyStoreCorrupt(f"key store {path} decrypts but its secrets are malformed; restore a backup") from exc
    mismatched = [
        kid
        for kid, key in public.public_keys.items()
        if kid not in private or DeploymentPublicKey.from_public(private[kid].public_key()) != key
    ]
    if mismatched or secrets.server_signing_key.public_key() != public.server_verify_key:
        which = ", ".join(mismatched) or "server signing key"
        raise KeyStoreCorrupt(f"key store {path}: public and private keys disagree ({which}); restore a backup")
    return secrets, store_key


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
    if not isinstance(document, dict) or document.get("format") != STORE_FORMAT:
        raise KeyStoreCorrupt(f"{path} is not a {STORE_FORMAT} key store; check the path or upgrade CryoSpy")
    return document


def _parse_public(path: Path, document: dict[str, Any]) -> _Public:
    try:
        public_keys = {kid: DeploymentPublicKey.from_text(text) for kid, text in document["public_keys"].items()}
        if any(key.key_id != kid for kid, key in public_keys.items()):
            raise ValueError("a public key is filed under the wrong key id")
        current = document["current_key_id"]
        if current not in public_keys:
            raise ValueError(f"current key id {current!r} has no public key")
        kdf = document["kdf"]
        if kdf.get("name") != "scrypt" or set(kdf) != {"name", "n", "r", "p", "salt"}:
            raise ValueError("only scrypt key derivation is supported")
        _check_scrypt_n(kdf["n"], insecure_for_tests=True)
        if not (
            isinstance(kdf["r"], int) and 1 <= kdf["r"] <= 32 and isinstance(kdf["p"], int) and 1 <= kdf["p"] <= 16
        ):
            raise ValueError("scrypt r or p is out of range")
        return _Public(current, public_keys, verify_key_from_text(document["server_verify_key"]), dict(kdf))
    except (KeyError, TypeError, AttributeError, ValueError, KeyStoreError) as exc:
        raise KeyStoreCorrupt(
            f"key store {path} has a malformed public part ({exc}); restore it from a backup"
        ) from exc


def _write_atomic(path: Path, data: bytes, *, exclusive: bool) -> None:
    """A crash leaves either the old file or the new one, never a torn key store (0600, fsynced)."""
    try:
        write_atomic(path, data, exclusive=exclusive)
    except FileExistsError:
        raise KeyStoreExists(f"{path} already exists; refusing to overwrite it") from None
