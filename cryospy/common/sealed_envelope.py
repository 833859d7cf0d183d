"""The envelope of a sealed object: how its data key is wrapped to the deployment key, and how its header and its
content are signed.

Kept apart from the chunk streaming so the places that touch key material — wrapping on the device, unwrapping on the
server, the two signatures — sit side by side and can be checked against ``docs/sealed-format.md`` sections 2.3 and 2.4
at a glance.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.sealed_format import (
    KEY_SIZE,
    TRAILER_SIZE,
    Layout,
    SealedFormatError,
    SealedHeader,
    content_message,
)

WRAP_INFO = b"CryoSpy sealed v2 data-key wrap"
WRAP_NONCE = bytes(12)  # the wrapping key comes from a fresh ephemeral ECDH, so it encrypts exactly one message
HAS_AEAD_INTO = hasattr(AESGCM, "encrypt_into")
"""cryptography >= 45 encrypts into a reused buffer: no per-chunk allocation, which is most of the streaming cost."""
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw


def encrypt_into(aead: AESGCM, nonce: bytes, data: memoryview, aad: bytes, out: memoryview) -> memoryview:
    """Encrypt ``data`` into ``out`` (``len(data) + 16`` bytes) and return the filled view; falls back to a copy on
    older cryptography releases.
    """
    if HAS_AEAD_INTO:
        aead.encrypt_into(nonce, data, aad, out)
        return out
    return memoryview(aead.encrypt(nonce, data, aad))


def decrypt_into(aead: AESGCM, nonce: bytes, sealed: memoryview, aad: bytes, out: memoryview) -> None:
    """Authenticate and decrypt ``sealed`` into ``out`` (``len(sealed) - 16`` bytes); raises InvalidTag."""
    if HAS_AEAD_INTO:
        aead.decrypt_into(nonce, sealed, aad, out)
    else:
        out[:] = aead.decrypt(nonce, sealed, aad)


def _wrapping_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> AESGCM:
    """HKDF over the ECDH secret, salted with both public keys so the wrap is bound to this exact key pair."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=ephemeral_public + recipient_public, info=WRAP_INFO)
    return AESGCM(hkdf.derive(shared))


def wrap_data_key(data_key: bytes, ephemeral: X25519PrivateKey, recipient: DeploymentPublicKey) -> tuple[bytes, bytes]:
    """Wrap ``data_key`` to ``recipient``; returns the ephemeral public key and the wrapped key for the header."""
    ephemeral_public = ephemeral.public_key().public_bytes(_RAW, _RAW_PUB)
    recipient_public = recipient.public.public_bytes(_RAW, _RAW_PUB)
    try:
        shared = ephemeral.exchange(recipient.public)
    except ValueError as exc:
        raise ValueError(f"deployment public key {recipient.key_id} is not a usable X25519 key; re-export it") from exc
    aead = _wrapping_key(shared, ephemeral_public, recipient_public)
    return ephemeral_public, aead.encrypt(WRAP_NONCE, data_key, recipient.key_id.encode("utf-8"))


def unwrap_data_key(header: SealedHeader, private: X25519PrivateKey) -> bytes:
    """The data key of ``header``, or SealedFormatError if ``private`` is not the key it was wrapped to."""
    recipient_public = private.public_key().public_bytes(_RAW, _RAW_PUB)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(header.ephemeral_public))
        aead = _wrapping_key(shared, header.ephemeral_public, recipient_public)
        return aead.decrypt(WRAP_NONCE, header.wrapped_key, header.key_id.encode("utf-8"))
    except (ValueError, InvalidTag) as exc:
        raise SealedFormatError(
            f"{header.object_key}: the data key does not unwrap with this deployment's private key "
            f"{header.key_id}: the object was sealed to a different deployment key that uses the same id, "
            "or this key store is not the one the devices were given"
        ) from exc


def verify_header_signature(header: SealedHeader, device_public_key: Ed25519PublicKey) -> None:
    """Raise SealedFormatError unless ``device_public_key`` signed exactly this header."""
    try:
        device_public_key.verify(header.signature, header.signed_message)
    except InvalidSignature as exc:
        raise SealedFormatError(
            f"{header.object_key}: the header signature does not verify with the key given for device "
            f"{header.device_id!r}: the header was edited, or another key signed it"
        ) from exc


def sign_content(signer: Ed25519PrivateKey, header: SealedHeader, layout: Layout, body_hash: bytes) -> bytes:
    """The trailer: ``signer`` (the key that signed ``header``) vouches for exactly these chunk bytes under it."""
    return signer.sign(content_message(header.header_hash, layout.chunk_count, layout.plaintext_size, body_hash))


def verify_content_signature(
    header: SealedHeader, layout: Layout, body_hash: bytes, trailer: bytes, signer_public_key: Ed25519PublicKey
) -> None:
    """Raise SealedFormatError unless ``trailer`` is the signer's signature over this header and these chunk bytes.

    ``body_hash`` must be the SHA-256 the caller computed over the chunks it read, never a value taken from the object.
    """
    if len(trailer) != TRAILER_SIZE:
        raise SealedFormatError(
            f"{header.object_key}: the object ends {TRAILER_SIZE - len(trailer)} bytes into its content trailer: "
            "truncated while being read, or the size given does not match the object"
        )
    message = content_message(header.header_hash, layout.chunk_count, layout.plaintext_size, body_hash)
    try:
        signer_public_key.verify(trailer, message)
    except InvalidSignature as exc:
        raise SealedFormatError(
            f"{header.object_key}: the content does not match the signature {header.device_id!r} made when sealing "
            "it: chunks were re-encrypted or edited, or the trailer was altered, cut or taken from another object; "
            "restore it from a good copy"
        ) from exc
