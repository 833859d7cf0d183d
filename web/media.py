"""The dashboard's media endpoint: HTTP Range over sealed objects, decrypted on the fly, nothing written to disk.

Clips, thumbnails and downloads live sealed in MinIO. To answer ``Range: bytes=a-b`` against a clip's
*plaintext* (what an HLS playlist's ``EXT-X-BYTERANGE`` or a ``<video>`` element asks for),
:func:`serve_sealed_range`:

1. fetches the first bytes of the sealed object and opens its header (device signature, storage key,
   data-key unwrap; ``cryospy.common.sealed.open_header``);
2. derives the plaintext size from the header and the object size alone (``Layout.for_object``), so the
   ``Content-Length`` and ``Content-Range`` are exact before any content is read;
3. parses the Range against that size (:func:`parse_range`), answering 416 when nothing of it exists;
4. fetches *only* the sealed chunks that cover the range (one ranged GET for ``Layout.ciphertext_range``) and
   decrypts them one chunk at a time as the body is iterated, so memory stays at about two chunks whatever
   the range, and nothing is fetched until the WSGI server starts sending the body.

Every plaintext byte sent comes from a chunk AES-GCM has just authenticated. A chunk that fails makes the
body iterator raise ``SealedFormatError`` mid-stream; the server then drops the connection, and the client
sees a short body against the declared ``Content-Length`` rather than unauthenticated bytes. A range read
does not check the content trailer (``docs/sealed-format.md`` §4); downloads meant as evidence should be
verified with ``cryospy verify``.

Exceptions::

    CryoSpyError
    ├── RangeNotSatisfiable   (from parse_range; serve_sealed_range turns it into a 416 response)
    └── SealedFormatError     (propagates from serve_sealed_range: the object is not a valid sealed object
                               for that key and signer; the route answers 404/500 and logs it)

``ValueError`` for arguments that would corrupt the response headers (a newline in a content type).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import BinaryIO
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import KeyRing
from cryospy.common.sealed import ChunkDecryptor, Layout, open_header, read_header

__all__ = [
    "DOWNLOAD_CACHE_CONTROL",
    "MEDIA_CACHE_CONTROL",
    "MediaResponse",
    "RangeFetch",
    "RangeNotSatisfiable",
    "parse_range",
    "serve_sealed_range",
]

#: Sealed media never changes under its key, so the browser may keep it briefly; ``private`` keeps it out of
#: shared caches (it is decrypted video of someone's home).
MEDIA_CACHE_CONTROL = "private, max-age=300"
#: A download is a deliberate copy: do not also leave one in the browser cache.
DOWNLOAD_CACHE_CONTROL = "private, no-store"

_RANGE = re.compile(r"bytes\s*=\s*(.*)", re.IGNORECASE | re.DOTALL)
_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_DIGITS_CAP = 20  # more digits than any object size; keeps int() away from huge strings
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?: *; *{_TOKEN}={_TOKEN})*")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RangeNotSatisfiable(CryoSpyError):
    """The Range asked only for bytes past the end of the representation: answer 416 with ``bytes */size``."""

    def __init__(self, size: int, header: str) -> None:
        fix = f"ask for bytes within 0..{size - 1}" if size else "it is empty; request it without a Range"
        super().__init__(f"Range {header!r} selects nothing of a {size}-byte representation; {fix}")
        self.size = size


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The half-open byte range ``[start, end)`` a ``Range`` header selects from ``size`` bytes, or None for all.

    Follows RFC 9110 §14.1–14.2 for one range: ``bytes=a-b`` (``b`` clamped to the end), ``bytes=a-`` and the
    suffix form ``bytes=-n`` (the last ``n`` bytes, the whole representation when it is shorter). Returns None
    — serve the whole representation with 200, as the RFC allows — when there is no header, the syntax is
    invalid (including ``a > b``), the unit is not ``bytes``, or several ranges are asked for: browsers and
    HLS players never send multi-range requests for media, and a multipart/byteranges body is not worth its
    complexity here. Raises :class:`RangeNotSatisfiable` when the one range starts at or beyond ``size``, or is
    a zero-length suffix.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if header is None:
        return None
    unit = _RANGE.fullmatch(header.strip())
    if unit is None:
        return None
    specs = [s.strip() for s in unit.group(1).split(",")]
    if len(specs) != 1:
        return None
    spec = _SPEC.fullmatch(specs[0])
    if spec is None:
        return None
    first_text, last_text = spec.groups()
    if not first_text:
        if not last_text:
            return None  # "bytes=-" is not a range
        suffix = _number(last_text)
        if suffix == 0:
            raise RangeNotSatisfiable(size, header)
        if size == 0:
            return None  # a non-empty suffix of nothing is satisfiable, and is the (empty) whole
        return max(0, size - suffix), size
    first = _number(first_text)
    if last_text:
        last = _number(last_text)
        if last < first:
            return None  # invalid, so ignored (RFC 9110 §14.1.1), not unsatisfiable
        end = min(last + 1, size)
    else:
        end = size
    if first >= size:
        raise RangeNotSatisfiable(size, header)
    return first, end


@dataclass(frozen=True)
class MediaResponse:
    """Status, headers and a lazily fetched body, ready for ``start_response(resp.status_line, resp.headers)``.

    The body fetches and decrypts only when iterated, so a HEAD handler can drop it without touching MinIO.
    """

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes] = field(default=())

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), for tests and logging."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


#: ``range_fetch(first, last_inclusive)`` returns exactly those bytes of the sealed object, as bytes or a
#: readable stream (a MinIO ``get_object(..., offset, length)`` response, an open file window).
RangeFetch = Callable[[int, int], BinaryIO | bytes]


def serve_sealed_range(
    *,
    header_fetch: Callable[[], bytes],
    range_fetch: RangeFetch,
    object_size: int,
    keyring: KeyRing,
    signer_public_key: Ed25519PublicKey,
    expected_object_key: str,
    range_header: str | None,
    content_type: str,
    download_name: str | None = None,
) -> MediaResponse:
    """Answer a (possibly ranged) GET for the plaintext of the sealed object at ``expected_object_key``.

    ``header_fetch()`` returns the object's first bytes (``MAX_HEADER_SIZE`` is always enough; fewer is fine as
    long as they hold the header); ``range_fetch`` is called at most once, with the sealed byte range of the
    chunks the answer needs, and only when the body is iterated. ``object_size`` is the sealed object's size
    (from the index or a HEAD). ``download_name`` adds ``Content-Disposition: attachment`` and turns caching
    off. Raises ``SealedFormatError`` when the header does not open (wrong key, signer or storage key).
    """
    if not _MEDIA_TYPE.fullmatch(content_type):
        raise ValueError(f"content_type {content_type!r} is not a plain media type such as 'video/mp4'")
    header = read_header(io.BytesIO(header_fetch()))
    decryptor = open_header(
        header, keyring=keyring, signer_public_key=signer_public_key, expected_object_key=expected_object_key
    )
    layout = Layout.for_object(header, object_size)
    size = layout.plaintext_size
    headers = [
        ("Accept-Ranges", "bytes"),
        ("Cache-Control", DOWNLOAD_CACHE_CONTROL if download_name is not None else MEDIA_CACHE_CONTROL),
        ("ETag", f'"{header.header_hash[:16].hex()}"'),
        ("X-Content-Type-Options", "nosniff"),
    ]
    try:
        selected = parse_range(range_header, size)
    except RangeNotSatisfiable:
        return MediaResponse(416, [*headers, ("Content-Range", f"bytes */{size}"), ("Content-Length", "0")])
    headers.append(("Content-Type", content_type))
    if download_name is not None:
        headers.append(("Content-Disposition", _attachment(download_name)))
    if selected is None:
        start, end, status = 0, size, 200
    else:
        (start, end), status = selected, 206
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{size}"))
    headers.append(("Content-Length", str(end - start)))
    return MediaResponse(status, headers, _PlaintextBody(decryptor, layout, start, end, range_fetch))


class _PlaintextBody:
    """Iterable body: one ranged fetch of the covering chunks on first iteration, then chunk-by-chunk decryption.

    A class rather than a generator so that ``close()`` (which WSGI servers call, also when the client hangs up
    mid-stream) releases the upstream connection even if iteration never started or stopped early.
    """

    def __init__(self, decryptor: ChunkDecryptor, layout: Layout, start: int, end: int, fetch: RangeFetch) -> None:
        self._decryptor = decryptor
        self._layout = layout
        self._start, self._end = start, end
        self._fetch = fetch
        self._source: BinaryIO | bytes | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self._start == self._end:
            return
        first, stop = self._layout.ciphertext_range(self._start, self._end)
        self._source = self._fetch(first, stop - 1)
        try:
            for piece in self._decryptor.iter_range(self._layout, self._start, self._end, self._source):
                if piece:
                    yield piece
        finally:
            self.close()

    def close(self) -> None:
        source, self._source = self._source, None
        if source is None or isinstance(source, bytes | bytearray | memoryview):
            return
        source.close()
        release = getattr(source, "release_conn", None)  # urllib3 responses, which minio-py returns
        if callable(release):
            release()


def _number(digits: str) -> int:
    """ASCII digits to an int; absurdly long numbers (past any object size) saturate instead of parsing."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _DIGITS_CAP else 10**_DIGITS_CAP


def _attachment(name: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 one (RFC 6266 / RFC 8187).

    Path separators, quotes and control characters cannot survive either form, so no name can break out of
    the header or choose where the browser saves it.
    """
    visible = _CONTROL.sub("", name)
    base = visible.replace("\\", "/").rsplit("/", 1)[-1].strip() or "download"
    fallback = _FILENAME_UNSAFE.sub("_", base)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"
