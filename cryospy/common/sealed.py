"""Seal and open CryoSpy objects: streaming envelope encryption, device signatures over header and content, range reads.

Every clip, thumbnail and metadata document is sealed before it touches MinIO or disk. The recipe, in one place so that
no other module handles raw keys (``docs/sealed-format.md`` has the byte-level spec and the threat model):

* a fresh random 256-bit data key per object encrypts the plaintext with AES-256-GCM in fixed-size chunks; each chunk's
  nonce is its index plus a last-chunk flag and its associated data is the SHA-256 of the whole header, so truncation,
  dropped, reordered or swapped chunks and a header moved onto another body all fail authentication;
* the data key is wrapped to the deployment's X25519 public key (ephemeral-static ECDH, HKDF-SHA256 over both public
  keys), so devices can seal but never read — not even their own past clips;
* the device signs the header (Ed25519): object key, device id, sequence, capture time, key id and the hash of its
  previous header, which is what :mod:`cryospy.common.chain` verifies;
* the device signs the content too: a fixed-size trailer after the last chunk holds its Ed25519 signature over the
  header hash, the chunk count, the plaintext size and the SHA-256 of every chunk byte. GCM alone cannot stop whoever
  holds the deployment private key (the unlocked server) from re-encrypting other content under the device's header;
  the trailer does, and :func:`verify_content` checks it with no key but the device's public one.

Sealing and opening stream through file objects holding at most two chunks in memory. This module is the public
face and the sealing side; the bytes live in :mod:`~cryospy.common.sealed_format`, the key wrapping and signature in
:mod:`~cryospy.common.sealed_envelope`, the opening side in :mod:`~cryospy.common.sealed_open`. Import from here.

Exceptions::

    CryoSpyError
    └── SealedFormatError   every failed parse, signature check, key unwrap, chunk or content authentication
    (ValueError for invalid *arguments* to seal or to range helpers: those are the caller's bugs, not bad data)

Range reads (what the media endpoint does for an HTTP Range request against MinIO)::

    header = read_header(io.BytesIO(get_object_range(key, 0, MAX_HEADER_SIZE - 1)))   # or a first small GET
    decryptor = open_header(header, keyring=keys, signer_public_key=device_key, expected_object_key=key)
    layout = Layout.for_object(header, object_size)          # object_size from HEAD or the index
    first, stop = layout.ciphertext_range(start, end)        # half-open; HTTP wants bytes=first-(stop-1)
    body = get_object_range(key, first, stop - 1)            # bytes, or a stream with .read()
    for piece in decryptor.iter_range(layout, start, end, body):
        yield piece                                          # only the covering chunks are decrypted

A 1 MiB range with the default 1 MiB chunks touches at most two chunks. A range read authenticates exactly the chunks it
returns with AES-GCM, which stops everyone but a holder of the deployment private key; it does not read the trailer, so
it proves neither the object's length nor that the server left the content alone. A full read (``iter_plaintext``,
``copy_to``, ``open_bytes``), ``SealedReader.verify_length`` and :func:`verify_content` hash every chunk and check the
trailer. ``open_sealed`` does the same over any seekable file object, reading only what each call needs.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from datetime import datetime
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.sealed_envelope import encrypt_into, sign_content, verify_header_signature, wrap_data_key
from cryospy.common.sealed_format import (
    DEFAULT_CHUNK_SIZE,
    KEY_SIZE,
    MAX_HEADER_SIZE,
    SIGNATURE_CONTEXT,
    TAG_SIZE,
    ZERO_HASH,
    Layout,
    SealedFormatError,
    SealedHeader,
    check_chunk_size,
    chunk_nonce,
    ciphertext_range,
    encode_unsigned_header,
    fill,
    header_length,
    parse_header,
    read_header,
    write_all,
)
from cryospy.common.sealed_open import (
    ChunkDecryptor,
    SealedReader,
    open_bytes,
    open_header,
    open_sealed,
    verify_content,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_HEADER_SIZE",
    "ZERO_HASH",
    "ChunkDecryptor",
    "Layout",
    "SealedFormatError",
    "SealedHeader",
    "SealedReader",
    "ciphertext_range",
    "header_length",
    "open_bytes",
    "open_header",
    "open_sealed",
    "read_header",
    "seal",
    "seal_bytes",
    "verify_content",
    "verify_header_signature",
]


def seal(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    object_key: str,
    device_id: str,
    sequence: int,
    captured_at: datetime,
    content_type: str,
    prev_hash: bytes,
    recipient: DeploymentPublicKey,
    signer: Ed25519PrivateKey,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rng: Callable[[int], bytes] = os.urandom,
) -> SealedHeader:
    """Stream ``src`` into ``dst`` as a sealed object for ``object_key``; return the header written.

    Holds two chunk-sized buffers whatever the input size, and reads one byte ahead: that byte is what tells the sealer
    which chunk is last without knowing the length in advance (cameras pipe into it). Every chunk written is also fed to
    SHA-256, and after the last one ``signer`` signs that hash into the trailer. ``rng`` is called twice — 32 bytes
    for the data key, then 32 for the ephemeral X25519 key — and is injectable only so known-answer vectors are
    reproducible. ``dst.write`` must consume the bytes before returning (files, sockets and BytesIO do): buffers are
    reused between chunks.
    """
    check_chunk_size(chunk_size)
    data_key, ephemeral_secret = rng(KEY_SIZE), rng(KEY_SIZE)
    if len(data_key) != KEY_SIZE or len(ephemeral_secret) != KEY_SIZE:
        raise ValueError(f"rng must return exactly the {KEY_SIZE} bytes asked for")
    ephemeral = X25519PrivateKey.from_private_bytes(ephemeral_secret)
    ephemeral_public, wrapped = wrap_data_key(data_key, ephemeral, recipient)
    unsigned = encode_unsigned_header(
        object_key=object_key,
        device_id=device_id,
        sequence=sequence,
        captured_at=captured_at,
        key_id=recipient.key_id,
        prev_hash=prev_hash,
        content_type=content_type,
        chunk_size=chunk_size,
        ephemeral_public=ephemeral_public,
        wrapped_key=wrapped,
    )
    header = parse_header(unsigned + signer.sign(SIGNATURE_CONTEXT + unsigned))
    write_all(dst, header.encoded)
    count, plaintext_size, body_hash = _seal_chunks(src, dst, AESGCM(data_key), header.header_hash, chunk_size)
    layout = Layout(header.header_size, chunk_size, count, plaintext_size)
    write_all(dst, sign_content(signer, header, layout, body_hash))
    return header


def _seal_chunks(src: BinaryIO, dst: BinaryIO, aead: AESGCM, aad: bytes, chunk_size: int) -> tuple[int, int, bytes]:
    """Encrypt ``src`` chunk by chunk; return the chunk count, the plaintext size and the SHA-256 of the chunks written.
    The input buffer holds one byte more than a chunk: when that byte arrives the current chunk is not the last, and it
    becomes the first byte of the next chunk (one buffer, not two).

    Buffers start at the source's known remaining size when it is seekable, so sealing a 20 kB thumbnail does not zero
    two 1 MiB buffers; a source that turns out longer (a file still growing) switches to full-size buffers.
    """
    remaining = _remaining(src)
    capacity = chunk_size + 1 if remaining is None else min(remaining, chunk_size) + 1
    data = memoryview(bytearray(capacity))
    filled = fill(src, data)
    if filled == capacity <= chunk_size:  # more data than the source announced: switch to full-size buffers
        grown = memoryview(bytearray(chunk_size + 1))
        grown[:filled] = data[:filled]
        data = grown
        filled += fill(src, data[filled:])
    out = memoryview(bytearray(min(filled, chunk_size) + TAG_SIZE))
    index = plaintext_size = 0
    body_hash = hashlib.sha256()
    while True:
        last = filled <= chunk_size
        size = filled if last else chunk_size
        sealed = encrypt_into(aead, chunk_nonce(index, last), data[:size], aad, out[: size + TAG_SIZE])
        body_hash.update(sealed)
        write_all(dst, sealed)
        plaintext_size += size
        if last:
            return index + 1, plaintext_size, body_hash.digest()
        data[0] = data[chunk_size]
        filled = 1 + fill(src, data[1:])
        index += 1


def _remaining(src: BinaryIO) -> int | None:
    """Bytes left in a seekable source (files, BytesIO), else None; only ever used to size buffers."""
    try:
        if not src.seekable():
            return None
        position = src.tell()
        end = src.seek(0, io.SEEK_END)
        src.seek(position)
    except (AttributeError, OSError, ValueError):
        return None
    return max(end - position, 0)


def seal_bytes(
    data: bytes,
    *,
    object_key: str,
    device_id: str,
    sequence: int,
    captured_at: datetime,
    content_type: str,
    prev_hash: bytes,
    recipient: DeploymentPublicKey,
    signer: Ed25519PrivateKey,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rng: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, SealedHeader]:
    """Seal an in-memory value (thumbnails, metadata); same arguments as :func:`seal`."""
    out = io.BytesIO()
    header = seal(
        io.BytesIO(data),
        out,
        object_key=object_key,
        device_id=device_id,
        sequence=sequence,
        captured_at=captured_at,
        content_type=content_type,
        prev_hash=prev_hash,
        recipient=recipient,
        signer=signer,
        chunk_size=chunk_size,
        rng=rng,
    )
    return out.getvalue(), header
