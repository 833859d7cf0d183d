"""Bytes of the sealed-object format, version 2: the header codec, the chunk layout and the content trailer.

This module knows where every byte of a sealed object lives and nothing about keys; :mod:`cryospy.common.sealed` builds
the cryptography on top of it. Splitting them keeps the parser — the part that faces hostile input — small enough to
read in one sitting, and lets the media endpoint compute byte ranges without touching key material.
``docs/sealed-format.md`` is the normative description; the constants below must match it.

A sealed object is ``header || chunk_0 || … || chunk_{n-1} || trailer``. Each chunk is the AES-256-GCM ciphertext of up
to ``chunk_size`` plaintext bytes followed by its 16-byte tag. Every chunk but the last holds exactly ``chunk_size``
bytes; the last holds 1…``chunk_size`` bytes, or 0 when the whole plaintext is empty. The trailer is a fixed 64-byte
Ed25519 signature by the header's signer over :func:`content_message`, which binds the SHA-256 of every chunk byte to
the header. So the object's size alone determines the chunk count, the plaintext size and where the trailer sits
(:class:`Layout`); the per-chunk last flag in the nonce makes a truncation at a chunk boundary fail authentication
instead of looking like a shorter object.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from cryospy.common.errors import CryoSpyError

MAGIC = b"\x89CSO\r\n\x1a\n"
"""Eight bytes first in every sealed object. The high byte and the CR LF / ^Z / LF tail (the PNG trick) make any
text-mode or line-ending mangling in transit fail at the first read instead of deep inside a chunk.
"""
VERSION = 2
PREAMBLE = struct.Struct(">8sBBH")  # magic, version, flags (must be 0), total header length
FIXED = struct.Struct(">IQq32s32s48s")  # chunk_size, sequence, captured_at_ms, prev_hash, ephemeral, wrapped key
SIGNATURE_SIZE = 64
TAG_SIZE = 16
KEY_SIZE = 32
WRAPPED_KEY_SIZE = KEY_SIZE + TAG_SIZE
HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
SIGNATURE_CONTEXT = b"CryoSpy sealed header v2\n"
"""Prefixed to the header bytes before signing so that a device signature over a header can never be replayed as a
signature over anything else the same key signs (API requests, enrolment proofs, content trailers).
"""
CONTENT_CONTEXT = b"CryoSpy sealed content v2\n"
"""Prefixed to :func:`content_message`; differs from :data:`SIGNATURE_CONTEXT` in its 16th byte, so neither signature
can stand in for the other.
"""
TRAILER_SIZE = SIGNATURE_SIZE
"""The trailer is one Ed25519 signature: fixed size, so the layout still follows from header and object size alone."""

MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 << 20
"""Bounds the buffers a hostile header can make a reader allocate (two chunks at most are held at once)."""
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_OBJECT_KEY_BYTES = 1024  # the S3 / MinIO limit
MAX_SHORT_TEXT_BYTES = 255
MAX_SEQUENCE = (1 << 64) - 1
MAX_CHUNKS = 1 << 48  # far beyond any clip; keeps the 64-bit nonce counter nowhere near wrapping
MIN_HEADER_SIZE = PREAMBLE.size + FIXED.size + 2 + 1 + 1 + 1 + 4 + SIGNATURE_SIZE
MAX_HEADER_SIZE = PREAMBLE.size + FIXED.size + 2 + MAX_OBJECT_KEY_BYTES + 3 * (1 + MAX_SHORT_TEXT_BYTES) + 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SealedFormatError(CryoSpyError):
    """The one error for every sealed object that fails to parse, verify or decrypt.

    Callers handle a single type whether the object was truncated, edited, spliced, copied to another key or sealed to a
    key they do not hold; the message carries the specific cause for a human, never for program logic.
    """

    exit_code = 6


@dataclass(frozen=True)
class SealedHeader:
    """Everything a sealed object says about itself, authenticated by the device signature.

    Produced only by :func:`parse_header` (and by sealing, which parses what it wrote), so ``encoded`` is always the
    exact bytes found in the object and ``header_hash`` is what the next clip of the device chains to.
    """

    object_key: str
    device_id: str
    sequence: int
    captured_at: datetime
    key_id: str
    prev_hash: bytes = field(repr=False)
    content_type: str
    chunk_size: int
    header_hash: bytes = field(repr=False)
    ephemeral_public: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    encoded: bytes = field(repr=False)

    @property
    def header_size(self) -> int:
        return len(self.encoded)

    @property
    def signed_message(self) -> bytes:
        """The exact message the device's Ed25519 signature covers."""
        return SIGNATURE_CONTEXT + self.encoded[:-SIGNATURE_SIZE]


def content_message(header_hash: bytes, chunk_count: int, plaintext_size: int, body_hash: bytes) -> bytes:
    """The message the trailer signs: context, header hash, u64 chunk count, u64 plaintext size, SHA-256 of the body.

    ``body_hash`` is the SHA-256 of every byte between the header and the trailer (each chunk's ciphertext and tag, in
    order). It has to be a collision-resistant hash of the bytes, not a list of GCM tags: whoever holds the data key can
    make a different chunk with the same tag (GHASH is linear in the ciphertext), so tags prove nothing against the one
    party this trailer exists for, the holder of the deployment private key.
    """
    counts = chunk_count.to_bytes(8, "big") + plaintext_size.to_bytes(8, "big")
    return CONTENT_CONTEXT + header_hash + counts + body_hash


def check_text(name: str, value: str, max_bytes: int) -> bytes:
    """Encode one header string, refusing what would make logs or file names ambiguous (controls, empty, too long).

    Shared by the sealer (raises ``ValueError`` for the caller's bug) and the parser (wraps it into
    :class:`SealedFormatError`), so the two can never disagree about what a valid header is.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{name} {value!r} contains control characters; use printable text only")
    raw = value.encode("utf-8")
    if len(raw) > max_bytes:
        raise ValueError(f"{name} is {len(raw)} bytes of UTF-8; the limit is {max_bytes}")
    return raw


def check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(
            f"chunk_size {chunk_size!r} is out of range; use {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} (the "
            f"default {DEFAULT_CHUNK_SIZE} suits video)"
        )
    return chunk_size


def captured_at_to_ms(captured_at: datetime) -> int:
    if not isinstance(captured_at, datetime) or captured_at.utcoffset() is None:
        raise ValueError(f"captured_at must be a timezone-aware datetime (use datetime.now(UTC)), got {captured_at!r}")
    delta = captured_at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_to_captured_at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def encode_unsigned_header(
    *,
    object_key: str,
    device_id: str,
    sequence: int,
    captured_at: datetime,
    key_id: str,
    prev_hash: bytes,
    content_type: str,
    chunk_size: int,
    ephemeral_public: bytes,
    wrapped_key: bytes,
) -> bytes:
    """The header without its trailing signature; raises ``ValueError`` naming the bad argument."""
    texts = [
        check_text("object_key", object_key, MAX_OBJECT_KEY_BYTES),
        check_text("device_id", device_id, MAX_SHORT_TEXT_BYTES),
        check_text("key_id", key_id, MAX_SHORT_TEXT_BYTES),
        check_text("content_type", content_type, MAX_SHORT_TEXT_BYTES),
    ]
    check_chunk_size(chunk_size)
    if not isinstance(sequence, int) or not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence {sequence!r} must be an integer in 0..2**64-1")
    if not isinstance(prev_hash, bytes | bytearray) or len(prev_hash) != HASH_SIZE:
        raise ValueError(
            "prev_hash must be the 32-byte header_hash of the device's previous clip (zeros for the first)"
        )
    if len(ephemeral_public) != KEY_SIZE or len(wrapped_key) != WRAPPED_KEY_SIZE:
        raise ValueError("internal: ephemeral key or wrapped key has the wrong length")
    ms = captured_at_to_ms(captured_at)
    body = bytearray(FIXED.pack(chunk_size, sequence, ms, bytes(prev_hash), ephemeral_public, wrapped_key))
    body += struct.pack(">H", len(texts[0])) + texts[0]
    for raw in texts[1:]:
        body += bytes([len(raw)]) + raw
    total = PREAMBLE.size + len(body) + SIGNATURE_SIZE
    return PREAMBLE.pack(MAGIC, VERSION, 0, total) + bytes(body)


def header_length(preamble: bytes) -> int:
    """Total header size announced by the first ``PREAMBLE.size`` bytes of an object.

    Lets a caller that fetches objects by HTTP range ask for exactly the header before anything else.
    """
    if len(preamble) < PREAMBLE.size:
        raise SealedFormatError("not a CryoSpy sealed object: it is shorter than the 12-byte preamble")
    magic, version, flags, total = PREAMBLE.unpack_from(preamble)
    if magic != MAGIC:
        raise SealedFormatError("not a CryoSpy sealed object: the magic bytes are wrong (a plaintext or mangled file?)")
    if version != VERSION:
        remedy = "upgrade CryoSpy" if version > VERSION else "it predates the released format; re-record or discard it"
        raise SealedFormatError(
            f"sealed format version {version} is not supported by this CryoSpy (it reads version {VERSION}); {remedy}"
        )
    if flags != 0:
        raise SealedFormatError(f"sealed header has unknown flags {flags:#04x}; upgrade CryoSpy or check the file")
    if not MIN_HEADER_SIZE <= total <= MAX_HEADER_SIZE:
        raise SealedFormatError(f"sealed header claims an impossible length of {total} bytes: corrupt")
    return total


def parse_header(encoded: bytes) -> SealedHeader:
    """Parse exactly one complete header (``header_length`` bytes); strict, so bytes and header are one-to-one."""
    total = header_length(encoded)
    if len(encoded) != total:
        raise SealedFormatError(f"sealed header is {len(encoded)} bytes but announces {total}: truncated or corrupt")
    view = memoryview(encoded)
    chunk_size, sequence, ms, prev_hash, ephemeral, wrapped = FIXED.unpack_from(view, PREAMBLE.size)
    pos = PREAMBLE.size + FIXED.size
    end = total - SIGNATURE_SIZE
    texts: list[str] = []
    names = (
        ("object_key", MAX_OBJECT_KEY_BYTES, 2),
        ("device_id", MAX_SHORT_TEXT_BYTES, 1),
        ("key_id", MAX_SHORT_TEXT_BYTES, 1),
        ("content_type", MAX_SHORT_TEXT_BYTES, 1),
    )
    try:
        for name, limit, width in names:
            if pos + width > end:
                raise ValueError(f"{name} runs past the end of the header")
            size = int.from_bytes(view[pos : pos + width], "big")
            pos += width
            if pos + size > end:
                raise ValueError(f"{name} runs past the end of the header")
            value = bytes(view[pos : pos + size]).decode("utf-8")
            check_text(name, value, limit)
            texts.append(value)
            pos += size
        if pos != end:
            raise ValueError(f"{end - pos} unexpected bytes before the signature")
        check_chunk_size(chunk_size)
        captured_at = ms_to_captured_at(ms)
    except (ValueError, OverflowError) as exc:  # UnicodeDecodeError is a ValueError
        raise SealedFormatError(f"sealed header is malformed: {exc}") from exc
    object_key, device_id, key_id, content_type = texts
    raw = bytes(encoded)
    return SealedHeader(
        object_key=object_key,
        device_id=device_id,
        sequence=sequence,
        captured_at=captured_at,
        key_id=key_id,
        prev_hash=prev_hash,
        content_type=content_type,
        chunk_size=chunk_size,
        header_hash=hashlib.sha256(raw).digest(),
        ephemeral_public=ephemeral,
        wrapped_key=wrapped,
        signature=raw[end:],
        encoded=raw,
    )


def read_exactly(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes or fewer only at end of stream (file objects may return short reads mid-stream)."""
    parts: list[bytes] = []
    missing = size
    while missing:
        part = src.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def fill(src: BinaryIO, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``src``; fewer bytes only at end of stream (pipes return short reads)."""
    view = memoryview(buffer)
    readinto = getattr(src, "readinto", None)
    filled = 0
    while filled < len(buffer):
        if readinto is not None:
            got = readinto(view[filled:])
        else:
            part = src.read(len(buffer) - filled)
            got = len(part) if part is not None else None
            if got:
                view[filled : filled + got] = part
        if got is None:
            raise ValueError(
                "src returned no data without reaching end of stream (non-blocking?); pass a blocking file"
            )
        if got == 0:
            break
        filled += got
    return filled


def write_all(dst: BinaryIO, data: bytes | memoryview) -> None:
    """Write everything: raw files may accept only part of a buffer per call."""
    view = memoryview(data)
    while view:
        written = dst.write(view)
        if written is None or written >= len(view):  # buffered writers return None or the full length
            return
        if written <= 0:
            raise OSError("dst.write accepted no bytes; pass a blocking, writable file object")
        view = view[written:]


def read_header(src: BinaryIO) -> SealedHeader:
    """Parse the header at the stream's current position, leaving it just past the header; needs no keys.

    The header is unauthenticated until :func:`cryospy.common.sealed.verify_header_signature` or ``open_sealed`` has
    checked it: use it to pick keys and route work, not to trust content.
    """
    preamble = read_exactly(src, PREAMBLE.size)
    total = header_length(preamble)
    rest = read_exactly(src, total - PREAMBLE.size)
    if len(rest) != total - PREAMBLE.size:
        raise SealedFormatError("sealed object ends inside its header: truncated")
    return parse_header(preamble + rest)


def chunk_nonce(index: int, last: bool) -> bytes:
    """STREAM-style nonce: 3 zero bytes, the 64-bit big-endian chunk index, then 0x01 for the last chunk else 0x00.

    The data key is fresh for every object, so a counter never repeats under one key; the last flag is what turns "the
    object ends here" into something an attacker cannot fake by cutting at a chunk boundary.
    """
    return b"\x00\x00\x00" + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


@dataclass(frozen=True)
class Layout:
    """Where each chunk, and the trailer, of one sealed object lives, from its header and total size alone.

    The media endpoint uses this to turn a plaintext range into the sealed byte range to fetch
    (:meth:`ciphertext_range`, which never includes the trailer), then hands the fetched bytes to
    ``ChunkDecryptor.iter_range``.
    """

    header_size: int
    chunk_size: int
    chunk_count: int
    plaintext_size: int

    @classmethod
    def for_object(cls, header: SealedHeader, object_size: int) -> Layout:
        """Layout of a stored object of ``object_size`` bytes; raises SealedFormatError if no layout fits."""
        body = object_size - header.header_size - TRAILER_SIZE
        step = header.chunk_size + TAG_SIZE
        if body < TAG_SIZE:
            raise SealedFormatError(
                f"sealed object is {object_size} bytes, too short to hold even one chunk and the {TRAILER_SIZE}-byte "
                f"trailer after its {header.header_size}-byte header: truncated"
            )
        count = -(-body // step)
        last = body - (count - 1) * step - TAG_SIZE
        if last < 0 or (count > 1 and last == 0):
            raise SealedFormatError(
                f"sealed object size {object_size} does not fit its chunk layout: truncated or extended"
            )
        if count > MAX_CHUNKS:
            raise SealedFormatError(f"sealed object claims {count} chunks, more than the format allows: corrupt")
        return cls(header.header_size, header.chunk_size, count, body - count * TAG_SIZE)

    @classmethod
    def for_plaintext(cls, header: SealedHeader, plaintext_size: int) -> Layout:
        """Layout the sealer will produce for ``plaintext_size`` bytes (e.g. to declare Content-Length up front)."""
        if plaintext_size < 0:
            raise ValueError(f"plaintext_size must be >= 0, got {plaintext_size}")
        count = max(1, -(-plaintext_size // header.chunk_size))
        return cls(header.header_size, header.chunk_size, count, plaintext_size)

    @property
    def object_size(self) -> int:
        return self.trailer_offset + TRAILER_SIZE

    @property
    def trailer_offset(self) -> int:
        """Offset of the trailer: the end of the last chunk."""
        return self.header_size + self.plaintext_size + self.chunk_count * TAG_SIZE

    @property
    def overhead(self) -> int:
        """Bytes the sealed object adds over the plaintext: header, one tag per chunk, trailer."""
        return self.object_size - self.plaintext_size

    def chunk_offset(self, index: int) -> int:
        """Offset in the sealed object of chunk ``index`` (ciphertext first, tag last)."""
        return self.header_size + index * (self.chunk_size + TAG_SIZE)

    def chunk_plaintext_size(self, index: int) -> int:
        if not 0 <= index < self.chunk_count:
            raise ValueError(f"chunk index {index} is outside 0..{self.chunk_count - 1}")
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.plaintext_size - (self.chunk_count - 1) * self.chunk_size

    def chunk_span(self, start: int, end: int) -> range:
        """Indices of the chunks that cover plaintext ``[start, end)``; empty when the range is empty."""
        self._check_range(start, end)
        if start == end:
            return range(0)
        return range(start // self.chunk_size, (end - 1) // self.chunk_size + 1)

    def ciphertext_range(self, start: int, end: int) -> tuple[int, int]:
        """Half-open byte range ``[first, stop)`` of the sealed object holding the chunks for plaintext
        ``[start, end)``. For an HTTP Range header send ``bytes=first-(stop-1)``, or use :meth:`http_range`.
        """
        span = self.chunk_span(start, end)
        if not span:
            offset = self.chunk_offset(0)
            return offset, offset
        last = span[-1]
        return self.chunk_offset(span[0]), self.chunk_offset(last) + self.chunk_plaintext_size(last) + TAG_SIZE

    def http_range(self, start: int, end: int) -> str:
        first, stop = self.ciphertext_range(start, end)
        if first == stop:
            raise ValueError("an empty plaintext range needs no fetch; skip the request")
        return f"bytes={first}-{stop - 1}"

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.plaintext_size:
            raise ValueError(
                f"plaintext range [{start}, {end}) is outside the object's 0..{self.plaintext_size} bytes; "
                "clamp it first (an HTTP server answers 416 for unsatisfiable ranges)"
            )


def ciphertext_range(header: SealedHeader, object_size: int, start: int, end: int) -> tuple[int, int]:
    """The sealed byte range ``[first, stop)`` to fetch to decrypt plaintext ``[start, end)`` of an object of
    ``object_size`` bytes. Shorthand for ``Layout.for_object(header, object_size).ciphertext_range(start, end)``.
    """
    return Layout.for_object(header, object_size).ciphertext_range(start, end)
