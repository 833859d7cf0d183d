"""Opening sealed objects: signature and storage-key checks, authenticated chunk-by-chunk decryption, content proof.

Two ways in, one set of checks (``open_header``): :func:`open_sealed` over any seekable file object, reading only the
chunks each call needs; or :class:`ChunkDecryptor` over bytes fetched separately, e.g. by an HTTP Range GET for
``Layout.ciphertext_range``. Both authenticate every chunk they return and hold at most two chunks in memory.

What each read proves:

* a range read (``read_range``, ``iter_range``, ``ChunkDecryptor``): the chunks it returns, by AES-GCM. That stops
  everyone who lacks the deployment private key, but not the unlocked server, and it says nothing about the object's
  length or the chunks it did not read;
* a full read (``iter_plaintext``, ``copy_to``, :func:`open_bytes`) and ``SealedReader.verify_length``: additionally the
  content trailer, so the content is byte for byte what the signer sealed, whoever handled it since;
* :func:`verify_content`: the same content proof with no decryption key at all, for offline evidence checks.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.common.keys import KeyRing, UnknownKeyId
from cryospy.common.sealed_envelope import (
    decrypt_into,
    unwrap_data_key,
    verify_content_signature,
    verify_header_signature,
)
from cryospy.common.sealed_format import (
    TAG_SIZE,
    TRAILER_SIZE,
    Layout,
    SealedFormatError,
    SealedHeader,
    chunk_nonce,
    fill,
    read_exactly,
    read_header,
    write_all,
)

_HASH_BUFFER = 1 << 20
"""Bytes :func:`verify_content` reads at a time: large enough that hashing, not Python, sets the pace."""


class ChunkDecryptor:
    """The unwrapped data key of one verified header, able to decrypt chunks fetched in any way.

    Made by :func:`open_header`. It exists so the media endpoint can fetch ``Layout.ciphertext_range`` with an HTTP
    Range GET and decrypt just those bytes, without a seekable file object. It never reads the content trailer: chunks
    it returns are authenticated by AES-GCM only (see the module docstring). ``signer_public_key`` is the key the header
    was verified with; a :class:`SealedReader` needs it to check the trailer on full reads.
    """

    __slots__ = ("_aad", "_aead", "header", "signer_public_key")

    def __init__(
        self, header: SealedHeader, data_key: bytes, *, signer_public_key: Ed25519PublicKey | None = None
    ) -> None:
        self.header = header
        self.signer_public_key = signer_public_key
        self._aead = AESGCM(data_key)
        self._aad = header.header_hash

    def __repr__(self) -> str:
        return f"ChunkDecryptor({self.header.object_key!r})"

    def decrypt_chunk(self, index: int, sealed_chunk: bytes | memoryview, *, last: bool) -> bytes:
        """Plaintext of chunk ``index`` (ciphertext plus tag); ``last`` must say whether it ends the object."""
        try:
            return self._aead.decrypt(chunk_nonce(index, last), sealed_chunk, self._aad)
        except InvalidTag as exc:
            raise self._failure(index) from exc

    def decrypt_chunk_into(self, index: int, sealed_chunk: memoryview, out: memoryview, *, last: bool) -> None:
        """Like :meth:`decrypt_chunk`, into ``out`` (exactly ``len(sealed_chunk) - 16`` bytes): no allocation."""
        try:
            decrypt_into(self._aead, chunk_nonce(index, last), sealed_chunk, self._aad, out)
        except InvalidTag as exc:
            raise self._failure(index) from exc

    def iter_chunks(self, layout: Layout, first_index: int, sealed: bytes | BinaryIO) -> Iterator[bytes]:
        """Decrypt consecutive chunks starting at ``first_index`` from ``sealed`` (bytes or a readable stream) until it
        is exhausted; yields one plaintext chunk at a time.
        """
        stream = io.BytesIO(sealed) if isinstance(sealed, bytes | bytearray | memoryview) else sealed
        buffer = _chunk_buffer(layout, TAG_SIZE)
        index = first_index
        while index < layout.chunk_count:
            size = layout.chunk_plaintext_size(index) + TAG_SIZE
            got = fill(stream, buffer[:size])
            if got == 0 and index > first_index:
                return
            if got != size:
                raise SealedFormatError(
                    f"{self.header.object_key}: chunk {index} is {got} bytes, expected {size}: truncated fetch"
                )
            yield self.decrypt_chunk(index, buffer[:size], last=index == layout.chunk_count - 1)
            index += 1

    def iter_range(self, layout: Layout, start: int, end: int, sealed: bytes | BinaryIO) -> Iterator[bytes]:
        """Plaintext ``[start, end)`` from ``sealed``, which holds exactly ``layout.ciphertext_range(start, end)``."""
        span = layout.chunk_span(start, end)
        if not span:
            return
        chunks = self.iter_chunks(layout, span[0], sealed)
        for index in span:
            plain = next(chunks, None)
            if plain is None:
                raise SealedFormatError(f"{self.header.object_key}: the fetched range stops before chunk {index}")
            yield _trim(plain, index * layout.chunk_size, start, end)

    def _failure(self, index: int) -> SealedFormatError:
        return SealedFormatError(
            f"{self.header.object_key}: chunk {index} failed authentication: the object was edited, "
            "truncated, had chunks dropped, reordered or spliced from another object; restore it from a "
            "good copy"
        )


def open_header(
    header: SealedHeader,
    *,
    keyring: KeyRing,
    signer_public_key: Ed25519PublicKey,
    expected_object_key: str | None = None,
) -> ChunkDecryptor:
    """Verify the header's signature and storage key, unwrap its data key, return a decryptor for its chunks.

    ``expected_object_key`` is the key the object was found under: a validly sealed object copied or renamed to another
    key is rejected, so nobody can pass off one clip (or thumbnail) as another.
    """
    verify_header_signature(header, signer_public_key)
    _check_object_key(header, expected_object_key)
    try:
        private = keyring.private_key(header.key_id)
    except UnknownKeyId as exc:
        raise SealedFormatError(
            f"{header.object_key} is sealed to deployment key {header.key_id!r}, which this key store does "
            "not hold: open it with the key store of the deployment that recorded it"
        ) from exc
    return ChunkDecryptor(header, unwrap_data_key(header, private), signer_public_key=signer_public_key)


def _check_object_key(header: SealedHeader, expected_object_key: str | None) -> None:
    if expected_object_key is not None and header.object_key != expected_object_key:
        raise SealedFormatError(
            f"object stored at {expected_object_key!r} was sealed for {header.object_key!r}: it was copied "
            "or moved; treat it as tampered"
        )


class SealedReader:
    """Random and sequential access to the plaintext of one opened sealed object.

    Reads from ``src`` only the chunks each call needs and authenticates every chunk it returns. Seeks only when the
    next chunk is not where the stream already is, so a forward pass works on non-seekable streams too. Range reads
    stay cheap and skip the content trailer; whole-object reads and :meth:`verify_length` check it.
    """

    def __init__(
        self,
        src: BinaryIO,
        base: int,
        layout: Layout,
        decryptor: ChunkDecryptor,
        *,
        position: int | None = None,
    ) -> None:
        self._src = src
        self._base = base
        self._pos = base + layout.header_size if position is None else position
        self._sealed = _chunk_buffer(layout, TAG_SIZE)
        self._last_chunk: tuple[int, bytes] = (-1, b"")
        self.layout = layout
        self.decryptor = decryptor

    @property
    def header(self) -> SealedHeader:
        return self.decryptor.header

    @property
    def plaintext_size(self) -> int:
        return self.layout.plaintext_size

    def read_range(self, start: int, end: int) -> bytes:
        """Plaintext ``[start, end)``, decrypting only the chunks that cover it."""
        return b"".join(self.iter_range(start, end))

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        """Plaintext ``[start, end)`` one chunk-sized piece at a time, in constant memory."""
        for index in self.layout.chunk_span(start, end):
            yield _trim(self._decrypt(index), index * self.layout.chunk_size, start, end)

    def iter_plaintext(self) -> Iterator[bytes]:
        """The whole plaintext, chunk by chunk, then the content trailer; raises SealedFormatError at the first bad
        chunk, or after the last piece if the content is not what the signer sealed. Pieces come out before the trailer
        is read, so treat them as unverified until the iterator ends without an error.
        """
        body_hash = hashlib.sha256()
        last = self.layout.chunk_count - 1
        for index in range(self.layout.chunk_count):
            sealed = self._read_sealed(index)
            body_hash.update(sealed)
            plain = self.decryptor.decrypt_chunk(index, sealed, last=index == last)
            if plain:
                yield plain
        self._check_trailer(body_hash.digest())

    def copy_to(self, dst: BinaryIO) -> int:
        """Write the whole plaintext to ``dst`` and check the content trailer; returns the byte count. Decrypts into one
        reused buffer, so ``dst.write`` must consume the bytes before returning. On failure ``dst`` holds unverified
        bytes — a prefix, or everything when only the trailer fails: write to a temporary file and rename on success.
        """
        out = _chunk_buffer(self.layout, 0)
        self._last_chunk = (-1, b"")  # two chunk buffers at most, even after range reads
        body_hash = hashlib.sha256()
        last = self.layout.chunk_count - 1
        for index in range(self.layout.chunk_count):
            sealed = self._read_sealed(index)
            body_hash.update(sealed)
            size = len(sealed) - TAG_SIZE
            self.decryptor.decrypt_chunk_into(index, sealed, out[:size], last=index == last)
            write_all(dst, out[:size])
        self._check_trailer(body_hash.digest())
        return self.layout.plaintext_size

    def verify_length(self) -> None:
        """Prove the object whole: hash every chunk and check the content trailer, which fixes ``plaintext_size`` and
        every byte. A range read alone cannot notice that the object was cut after the range or re-encrypted by a holder
        of the deployment key. Reads the whole object once and decrypts nothing.
        """
        body_hash = hashlib.sha256()
        for index in range(self.layout.chunk_count):
            body_hash.update(self._read_sealed(index))
        self._check_trailer(body_hash.digest())

    def _check_trailer(self, body_hash: bytes) -> None:
        """Read the trailer, which follows the last chunk; check it against ``body_hash`` of the chunks just read."""
        signer = self.decryptor.signer_public_key
        if signer is None:
            raise ValueError(
                "this ChunkDecryptor was made without signer_public_key, so the content trailer cannot be checked; "
                "make it with open_header"
            )
        offset = self._base + self.layout.trailer_offset
        if offset != self._pos:
            self._src.seek(offset)
            self._pos = offset
        trailer = read_exactly(self._src, TRAILER_SIZE)
        self._pos += len(trailer)
        verify_content_signature(self.header, self.layout, body_hash, trailer, signer)

    def _decrypt(self, index: int) -> bytes:
        """Decrypt one chunk, keeping the last one: parsers that read many small pieces (MP4 box headers) from the same
        chunk then pay for one decryption, not one per read.
        """
        if self._last_chunk[0] != index:
            last = index == self.layout.chunk_count - 1
            self._last_chunk = (index, self.decryptor.decrypt_chunk(index, self._read_sealed(index), last=last))
        return self._last_chunk[1]

    def _read_sealed(self, index: int) -> memoryview:
        offset = self._base + self.layout.chunk_offset(index)
        if offset != self._pos:
            self._src.seek(offset)
            self._pos = offset
        size = self.layout.chunk_plaintext_size(index) + TAG_SIZE
        view = self._sealed[:size]
        got = fill(self._src, view)
        self._pos += got
        if got != size:
            raise SealedFormatError(
                f"{self.header.object_key}: the object ends {size - got} bytes early inside chunk {index}: "
                "it shrank while being read, or the size given does not match the object"
            )
        return view


def open_sealed(
    src: BinaryIO,
    *,
    keyring: KeyRing,
    signer_public_key: Ed25519PublicKey,
    expected_object_key: str | None = None,
    size: int | None = None,
) -> SealedReader:
    """Open the sealed object that starts at ``src``'s current position.

    Verifies the header signature with ``signer_public_key`` (the device's key, or the server's verify key for objects
    the server sealed), checks the storage key, unwraps the data key from ``keyring``. Chunks are authenticated as they
    are read; whole-object reads also check the content trailer. ``size`` is the total object size when ``src`` cannot
    seek to its end cheaply.
    """
    tell = getattr(src, "tell", None)
    base = tell() if tell is not None and _seekable(src) else 0
    header = read_header(src)
    decryptor = open_header(
        header, keyring=keyring, signer_public_key=signer_public_key, expected_object_key=expected_object_key
    )
    position = base + header.header_size
    if size is None:
        position = src.seek(0, io.SEEK_END)
        size = position - base
    return SealedReader(src, base, Layout.for_object(header, size), decryptor, position=position)


def verify_content(
    src: BinaryIO,
    *,
    signer_public_key: Ed25519PublicKey,
    size: int | None = None,
    expected_object_key: str | None = None,
) -> SealedHeader:
    """Prove that the sealed object at ``src``'s position is exactly what its signer sealed; needs no decryption key.

    Checks the header signature, the storage key when ``expected_object_key`` is given, and the content trailer against
    the SHA-256 of every chunk byte, then returns the (now authenticated) header. This is the check for evidence handed
    to someone without the deployment's keys, and the only one that catches content re-encrypted by a holder of the
    deployment private key without decrypting anything. Cost: reads the whole object once, in 1 MiB pieces, at SHA-256
    speed (about 1 800 MiB/s with SHA extensions), plus two Ed25519 verifications; no AES. ``size`` is the total object
    size when ``src`` cannot seek to its end; then a forward pass over a pipe works. Raises SealedFormatError on any
    defect.
    """
    base = src.tell() if _seekable(src) else 0
    header = read_header(src)
    verify_header_signature(header, signer_public_key)
    _check_object_key(header, expected_object_key)
    if size is None:
        size = src.seek(0, io.SEEK_END) - base
        src.seek(base + header.header_size)
    layout = Layout.for_object(header, size)
    body_hash = hashlib.sha256()
    buffer = memoryview(bytearray(min(_HASH_BUFFER, layout.trailer_offset - layout.header_size)))
    left = layout.trailer_offset - layout.header_size
    while left:
        got = fill(src, buffer[: min(left, len(buffer))])
        if got == 0:
            raise SealedFormatError(
                f"{header.object_key}: the object ends {left + TRAILER_SIZE} bytes early: truncated, or the size "
                "given does not match the object"
            )
        body_hash.update(buffer[:got])
        left -= got
    verify_content_signature(header, layout, body_hash.digest(), read_exactly(src, TRAILER_SIZE), signer_public_key)
    return header


def _seekable(src: BinaryIO) -> bool:
    seekable = getattr(src, "seekable", None)
    return bool(seekable()) if seekable is not None else hasattr(src, "seek")


def open_bytes(
    data: bytes,
    *,
    keyring: KeyRing,
    signer_public_key: Ed25519PublicKey,
    expected_object_key: str | None = None,
) -> bytes:
    """The whole plaintext of an in-memory sealed object, content trailer checked; SealedFormatError on any defect."""
    reader = open_sealed(
        io.BytesIO(data),
        keyring=keyring,
        signer_public_key=signer_public_key,
        expected_object_key=expected_object_key,
    )
    out = io.BytesIO()
    reader.copy_to(out)
    return out.getvalue()


def _trim(plain: bytes, base: int, start: int, end: int) -> bytes:
    """The part of a chunk starting at plaintext offset ``base`` that falls in ``[start, end)``; no copy if all."""
    if start <= base and base + len(plain) <= end:
        return plain
    return plain[max(start - base, 0) : end - base]


def _chunk_buffer(layout: Layout, extra: int) -> memoryview:
    """Room for the largest chunk of this object plus ``extra``: a thumbnail gets kilobytes, not a whole chunk."""
    return memoryview(bytearray(min(layout.chunk_size, layout.plaintext_size) + extra))
