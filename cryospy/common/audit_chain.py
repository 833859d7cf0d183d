"""The audit log's on-disk format: sealed entries in a hash chain, and the check that finds the first bad one.

Why this shape. The log must be written at moments when the deployment's private key is *locked* (a failed
login at 3 a.m., before anyone has logged in since a restart), yet the disk's operator must learn nothing
from it, and nobody may change, remove or reorder an entry unseen. So:

* **Sealed to the public key.** Each entry's JSON is encrypted to the deployment's X25519 *public* key, which
  a locked runtime has: a fresh ephemeral key pair per entry, ECDH, HKDF-SHA256 over both public keys, then
  AES-256-GCM. Only the private key (an unlocked runtime, or the admin's passphrase) reads it back. The
  associated data is the entry's position and the previous entry's hash, so a box moved elsewhere in the log
  no longer opens. Nothing but the position and the hashes is in the clear: not the kind, the time or the
  account.
* **Chained over the ciphertext.** ``hash = SHA-256(tag | n | prev | box)``, each line naming the previous
  line's hash. Checking the chain needs no key at all, so ``cryospy verify`` can check an exported log on
  any computer, and a locked runtime can check its own.
* **Signed while unlocked.** A hash chain alone can be rewritten from the changed entry on by whoever holds
  the file. Entries written while the runtime is unlocked (every admin action and every successful login)
  therefore also carry an Ed25519 signature, by the key store's server signing key, over their hash. A
  signature vouches for every entry before it, through the chain. Entries written while locked (failed
  logins) are chained but unsigned until the next signed entry covers them; the running process also keeps
  the head it wrote last in memory and checks the file against it (a truncated or rewritten tail is caught
  while it runs). What stays open: while the runtime is *stopped*, someone with the disk can cut or rewrite
  the unsigned tail written since the last signed entry; ``docs/audit.md`` says so.

A line of the log (JSON, one per line)::

    {"n": 7, "prev": "<hex sha-256 of line 6>", "box": "<base64url>", "hash": "<hex>", "sig": "<base64url>"?}
    box  = b"CA1" | key id (16 ascii) | ephemeral public key (32) | AES-256-GCM(entry JSON)
    hash = SHA-256(b"cryospy audit v1\\n" | n as 8 bytes big-endian | prev (32) | box)
    sig  = Ed25519(server signing key, b"cryospy audit checkpoint v1\\n" | hash)

An export discloses the per-entry AES key next to each entry (:func:`entry_key`); with it anybody can open
that one box and compare it with the readable copy, without learning the deployment's private key.

Exceptions::

    CryoSpyError
    └── AuditFormatError    a box that does not open (wrong key, damaged, moved); one opaque message
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import DeploymentPublicKey, KeyRing

BOX_MAGIC = b"CA1"
HASH_TAG = b"cryospy audit v1\n"
SIG_TAG = b"cryospy audit checkpoint v1\n"
GENESIS = "0" * 64
_INFO = b"cryospy audit entry v1"
_NONCE = bytes(12)   # every entry key comes from a fresh ephemeral ECDH, so it encrypts exactly one message
_KEY_ID_LEN = 16
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


class AuditFormatError(CryoSpyError):
    """An audit entry could not be opened."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _aad(n: int, prev: str) -> bytes:
    return BOX_MAGIC + n.to_bytes(8, "big") + bytes.fromhex(prev)


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def seal_entry(entry: dict[str, Any], n: int, prev: str, recipient: DeploymentPublicKey) -> bytes:
    """The box for entry ``n`` (after the entry whose hash is ``prev``), readable only with the private key."""
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(_RAW, _RAW_PUB)
    key = _derive(ephemeral.exchange(recipient.public), eph_pub, recipient.raw)
    body = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()
    return BOX_MAGIC + recipient.key_id.encode() + eph_pub + AESGCM(key).encrypt(_NONCE, body, _aad(n, prev))


def entry_key(box: bytes, keyring: KeyRing) -> bytes:
    """The AES key of one box (to open it, or to disclose it in an export); raises AuditFormatError."""
    head = len(BOX_MAGIC)
    if box[:head] != BOX_MAGIC or len(box) < head + _KEY_ID_LEN + 32 + 16:
        raise AuditFormatError("this audit entry is not a sealed CryoSpy audit box")
    key_id = box[head:head + _KEY_ID_LEN].decode("ascii", "replace")
    eph_pub = box[head + _KEY_ID_LEN:head + _KEY_ID_LEN + 32]
    private = keyring.private_key(key_id)
    recipient = private.public_key().public_bytes(_RAW, _RAW_PUB)
    return _derive(private.exchange(X25519PublicKey.from_public_bytes(eph_pub)), eph_pub, recipient)


def open_with_key(box: bytes, key: bytes, n: int, prev: str) -> dict[str, Any]:
    """Open entry ``n``'s box with its own key (from :func:`entry_key` or an export's disclosure)."""
    start = len(BOX_MAGIC) + _KEY_ID_LEN + 32
    try:
        doc = json.loads(AESGCM(key).decrypt(_NONCE, box[start:], _aad(n, prev)))
    except (InvalidTag, ValueError):
        raise AuditFormatError(f"audit entry {n} does not open: it was changed or moved, or belongs to another "
                               "deployment") from None
    if not isinstance(doc, dict):
        raise AuditFormatError(f"audit entry {n} does not hold an entry")
    return doc


def chain_hash(n: int, prev: str, box: bytes) -> str:
    return hashlib.sha256(HASH_TAG + n.to_bytes(8, "big") + bytes.fromhex(prev) + box).hexdigest()


def sign_hash(digest: str, key: Ed25519PrivateKey) -> str:
    return _b64(key.sign(SIG_TAG + bytes.fromhex(digest)))


def make_line(n: int, prev: str, box: bytes, signer: Ed25519PrivateKey | None) -> tuple[str, str]:
    """One log line (without its newline) and its hash."""
    digest = chain_hash(n, prev, box)
    doc: dict[str, Any] = {"n": n, "prev": prev, "box": _b64(box), "hash": digest}
    if signer is not None:
        doc["sig"] = sign_hash(digest, signer)
    return json.dumps(doc, separators=(",", ":")), digest


@dataclass(frozen=True)
class Line:
    """A parsed log line; ``box`` is the sealed entry's bytes."""

    n: int
    prev: str
    box: bytes
    hash: str
    sig: str = ""


def parse_line(text: str) -> Line:
    """Raises ValueError for anything that is not a well-formed log line."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or set(doc) - {"n", "prev", "box", "hash", "sig"}:
        raise ValueError("not an audit line")
    n, prev, box, digest, sig = doc.get("n"), doc.get("prev"), doc.get("box"), doc.get("hash"), doc.get("sig", "")
    if not (isinstance(n, int) and n >= 0 and isinstance(prev, str) and len(prev) == 64 and isinstance(box, str)
            and isinstance(digest, str) and len(digest) == 64 and isinstance(sig, str)):
        raise ValueError("not an audit line")
    bytes.fromhex(prev + digest)
    try:
        raw = _unb64(box)
    except (binascii.Error, ValueError):
        raise ValueError("box is not base64url") from None
    return Line(n, prev, raw, digest, sig)


@dataclass(frozen=True)
class AuditCheck:
    """What :func:`check_log` found. ``first_bad`` is the position (0-based line) of the first entry that fails,
    ``problem`` says how; ``signed_upto`` is the last entry covered by a valid server signature (-1: none)."""

    entries: int
    signed_upto: int
    first_bad: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last signed one: chained, but not yet vouched for by the server key."""
        return self.entries - 1 - self.signed_upto

    def summary(self) -> str:
        if not self.ok:
            return f"TAMPERED: entry {self.first_bad}: {self.problem}"
        tail = f"; the last {self.unsigned_tail} are not signed yet" if self.unsigned_tail > 0 else ""
        return f"intact: {self.entries} entries, each chained to the one before{tail}"


def check_log(lines: Iterable[str], verify_key: Ed25519PublicKey | None,
              head: tuple[int, str] | None = None) -> AuditCheck:
    """Walk the chain from the start and stop at the first entry that fails.

    ``verify_key`` checks the ``sig`` fields (None: signatures are not checked). ``head`` is (n, hash) of the
    newest entry the caller knows was written (the running runtime's memory): a log that ends before it, or
    holds another entry there, was cut or rewritten."""
    prev, count, signed = GENESIS, 0, -1
    for i, text in enumerate(lines):
        count = i + 1
        try:
            line = parse_line(text)
        except ValueError:
            return AuditCheck(count, signed, i, "the line is not a readable audit entry (edited or damaged)")
        if line.n != i:
            how = (f"it says it is entry {line.n}: entries {i}–{line.n - 1} were removed" if line.n > i
                   else f"it says it is entry {line.n}: entries were reordered or duplicated")
            return AuditCheck(count, signed, i, how)
        if line.prev != prev:
            return AuditCheck(count, signed, i, "it does not chain to the entry before it: that one was changed, "
                                                "removed or moved")
        if chain_hash(line.n, line.prev, line.box) != line.hash:
            return AuditCheck(count, signed, i, "its content no longer matches its hash: it was changed")
        if line.sig and verify_key is not None:
            try:
                verify_key.verify(_unb64(line.sig), SIG_TAG + bytes.fromhex(line.hash))
            except (InvalidSignature, binascii.Error, ValueError):
                return AuditCheck(count, signed, i, "its server signature does not verify: it, or an entry before "
                                                    "it, was rewritten")
            signed = i
        if head is not None and i == head[0] and line.hash != head[1]:
            return AuditCheck(count, signed, i, "it is not the entry this runtime wrote there: the log was "
                                                "rewritten from here on")
        prev = line.hash
    if head is not None and count <= head[0]:
        return AuditCheck(count, signed, count, f"the log ends after {count} entries, but this runtime wrote "
                                                f"{head[0] + 1}: entries from {count} on were removed")
    return AuditCheck(count, signed)
