"""Opening sealed objects: signature and storage-key checks, then authenticated chunk-by-chunk decryption.

Two ways in, one set of checks (``open_header``): :func:`open_sealed` over any seekable file object, reading only the
chunks each call needs; or :class:`ChunkDecryptor` over bytes fetched separately, e.g. by an HTTP Range GET for
``Layout.ciphertext_range``. Both authenticate every chunk they return and hold at most two chunks in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.common.keys import KeyRing, UnknownKeyId
from cryospy.common.sealed_envelope import decrypt_into, unwrap_data_key, verify_header_signature
from cryospy.common.sealed_format import (
    TAG_SIZE,
    Layout,
    SealedFormatError,
    SealedHeader,
    chunk_nonce,
    fill,
    read_header,
    write_all,
)


class ChunkDecryptor:
    """The unwrapped data key of one verified header, able to decrypt chunks fetched in any way.

    Made by :func:`open_header`. It exists so the media endpoint can fetch ``Layout.ciphertext_range`` with an HTTP
    Range GET and decrypt just those bytes, without a seekable file object.
    """

    __slots__ = ("_aad", "_aead", "header")

    def __init__(self, header: SealedHeader, data_key: bytes) -> None:
        self.header = header
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
    if expected_object_key is not None and header.object_key != expected_object_key:
        raise SealedFormatError(
            f"object stored at {expected_object_key!r} was sealed for {header.object_key!r}: it was copied "
            "or moved; treat it as tampered"
        )
    try:
        private = keyring.private_key(header.key_id)
    except UnknownKeyId as exc:
        raise SealedFormatError(
            f"{header.object_key} is sealed to deployment key {header.key_id!r}, which this key store does "
            "not hold: open it with the key store of the deployment that recorded it"
        ) from exc
    return ChunkDecryptor(header, unwrap_data_key(header, private))


class SealedReader:
    """Random and sequential access to the plaintext of one opened sealed object.

    Reads from ``src`` only the chunks each call needs and authenticates every chunk it returns. Seeks only when the
    next chunk is not where the stream already is, so a forward pass works on non-seekable streams too.
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
        """The whole plaintext, chunk by chunk; raises SealedFormatError at the first bad chunk."""
        return self.iter_range(0, self.layout.plaintext_size)

    def copy_to(self, dst: BinaryIO) -> int:
        """Write the whole plaintext to ``dst``; returns the byte count. Decrypts into one reused buffer, so
        ``dst.write`` must consume the bytes before returning. On failure ``dst`` holds a partial prefix: write to a
        temporary file and rename on success if that matters.
        """
        out = _chunk_buffer(self.layout, 0)
        self._last_chunk = (-1, b"")  # two chunk buffers at most, even after range reads
        for index in range(self.layout.chunk_count):
            sealed = self._read_sealed(index)
            size = len(sealed) - TAG_SIZE
            self.decryptor.decrypt_chunk_into(index, sealed, out[:size], last=index == self.layout.chunk_count - 1)
            write_all(dst, out[:size])
        return self.layout.plaintext_size

    def verify_length(self) -> None:
        """Authenticate the last chunk, proving ``plaintext_size``: a range read alone cannot notice that the object was
        cut at a chunk boundary after the range.
        """
        self._decrypt(self.layout.chunk_count - 1)

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
    are read. ``size`` is the total object size when ``src`` cannot seek to its end cheaply.
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
    """The whole plaintext of an in-memory sealed object; raises SealedFormatError on any defect."""
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
