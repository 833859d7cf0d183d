"""The media endpoint's core: Range parsing per RFC 9110, and ranged reads of a real sealed fMP4 clip that fetch only
the covering chunks, decrypt them as a stream, and answer 200/206/416 with exact headers.
"""

from __future__ import annotations

import io
import os
import random
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cryospy.common.keys import DeploymentPublicKey, UnlockedKeys
from cryospy.common.sealed import MAX_HEADER_SIZE, ZERO_HASH, Layout, SealedFormatError, read_header, seal_bytes
from cryospy.common.sealed_format import TAG_SIZE
from cryospy.web.media import MediaResponse, RangeNotSatisfiable, parse_range, serve_sealed_range
from tests.support import sample_clip

KEY = "clips/cam-1/2025/01/02/20250102T030405.006Z-7.cse"
DEPLOYMENT = X25519PrivateKey.generate()
RING = UnlockedKeys(
    private_keys={DeploymentPublicKey.from_public(DEPLOYMENT.public_key()).key_id: DEPLOYMENT},
    current_key_id=DeploymentPublicKey.from_public(DEPLOYMENT.public_key()).key_id,
    server_signing_key=Ed25519PrivateKey.generate(),
    index_key=bytes(32),
)
DEVICE = Ed25519PrivateKey.generate()
CHUNK = 2048


def _seal(plain: bytes, *, chunk_size: int = CHUNK, key: str = KEY) -> bytes:
    sealed, _ = seal_bytes(
        plain,
        object_key=key,
        device_id="cam-1",
        sequence=7,
        captured_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        content_type="video/mp4",
        prev_hash=ZERO_HASH,
        recipient=DeploymentPublicKey.from_public(DEPLOYMENT.public_key()),
        signer=DEVICE,
        chunk_size=chunk_size,
    )
    return sealed


PLAIN = sample_clip(seconds=3.0, width=320, height=180)
SEALED = _seal(PLAIN)


# ---------------------------------------------------------------------------------------------------- parse_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", (0, 1)),
        ("bytes=0-99", (0, 100)),
        ("bytes=10-", (10, 1000)),
        ("bytes=999-", (999, 1000)),
        ("bytes=500-5000", (500, 1000)),  # last clamped to the end
        ("bytes=0-999999999999999999999999999999", (0, 1000)),  # absurd numbers saturate, never crash
        ("bytes=-1", (999, 1000)),
        ("bytes=-100", (900, 1000)),
        ("bytes=-5000", (0, 1000)),  # a suffix longer than the representation is all of it
        ("Bytes=1-2", (1, 3)),  # range units are case-insensitive
        ("  bytes=1-2  ", (1, 3)),
        ("bytes=0000000000000000000000000001-2", (1, 3)),
        ("bytes=5-4", None),  # last < first: invalid, so ignored
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("bytes=1-2-3", None),
        ("bytes=+1-2", None),
        ("bytes=١-٢", None),  # non-ASCII digits are not digits here
        ("bytes 0-1", None),
        ("items=0-1", None),  # another unit: ignore
        ("bytes=0-1,5-6", None),  # several ranges: serve the whole (documented)
        ("bytes=0-1,", None),
        ("bytes=", None),
        ("garbage", None),
    ],
)
def test_parse_range(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-", "bytes=-0", "bytes=99999999-1"])
def test_parse_range_unsatisfiable(header: str) -> None:
    if header == "bytes=99999999-1":  # first > last is *invalid*, which wins over unsatisfiable
        assert parse_range(header, 1000) is None
        return
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, 1000)
    assert caught.value.size == 1000


def test_parse_range_of_an_empty_representation() -> None:
    assert parse_range("bytes=-5", 0) is None  # a non-empty suffix of nothing is the (empty) whole
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


# ------------------------------------------------------------------------------------------- serve_sealed_range


@dataclass
class Store:
    """A sealed object behind the two fetch callbacks, recording every fetch and every byte actually read."""

    sealed: bytes
    header_fetches: int = 0
    fetches: list[tuple[int, int]] = field(default_factory=list)
    bytes_read: int = 0
    closed: int = 0

    def header_fetch(self) -> bytes:
        self.header_fetches += 1
        return self.sealed[:MAX_HEADER_SIZE]

    def range_fetch(self, first: int, last: int) -> CountingStream:
        self.fetches.append((first, last))
        return CountingStream(self, self.sealed[first : last + 1])


class CountingStream(io.RawIOBase):
    def __init__(self, store: Store, data: bytes) -> None:
        self._store = store
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        got = self._data.readinto(buffer)
        self._store.bytes_read += got
        return got

    def close(self) -> None:
        if not self.closed:
            self._store.closed += 1
        super().close()


def _serve(store: Store, range_header: str | None, **extra: object) -> MediaResponse:
    kwargs: dict[str, object] = {
        "header_fetch": store.header_fetch,
        "range_fetch": store.range_fetch,
        "object_size": len(store.sealed),
        "keyring": RING,
        "signer_public_key": DEVICE.public_key(),
        "expected_object_key": KEY,
        "range_header": range_header,
        "content_type": "video/mp4",
    } | extra
    return serve_sealed_range(**kwargs)  # type: ignore[arg-type]


def _minimal_sealed_bytes(sealed: bytes, start: int, end: int) -> int:
    layout = Layout.for_object(read_header(io.BytesIO(sealed)), len(sealed))
    return sum(layout.chunk_plaintext_size(i) + TAG_SIZE for i in layout.chunk_span(start, end))


def _ranges(size: int) -> Iterator[tuple[str, int, int]]:
    """Edge cases around chunk boundaries, then random ranges: (header, start, end)."""
    for start, end in [(0, 1), (0, CHUNK), (CHUNK - 1, CHUNK + 1), (CHUNK, 2 * CHUNK), (size - 1, size),
                       (1, size - 1), (3 * CHUNK + 17, 3 * CHUNK + 18)]:
        yield f"bytes={start}-{end - 1}", start, end
    yield f"bytes={size - 10}-", size - 10, size
    yield "bytes=-300", size - 300, size
    rng = random.Random(6381)
    for _ in range(40):
        a, b = sorted(rng.randrange(size) for _ in range(2))
        yield f"bytes={a}-{b}", a, b + 1


def test_every_range_is_the_plaintext_slice_and_fetches_only_its_chunks() -> None:
    size = len(PLAIN)
    assert size > 8 * CHUNK  # a real clip spanning many chunks
    for header, start, end in _ranges(size):
        store = Store(SEALED)
        response = _serve(store, header)
        assert store.fetches == []  # nothing fetched until the body is iterated
        assert response.status == 206
        assert response.header("Content-Range") == f"bytes {start}-{end - 1}/{size}"
        assert response.header("Content-Length") == str(end - start)
        assert b"".join(response.body) == PLAIN[start:end], header
        assert store.header_fetches == 1 and len(store.fetches) == 1
        first, last = store.fetches[0]
        assert last - first + 1 == store.bytes_read == _minimal_sealed_bytes(SEALED, start, end), header
        assert store.closed == 1


def test_fragment_ranges_of_the_clip_round_trip() -> None:
    """The ranges a playlist actually names: the init segment and each moof+mdat."""
    from cryospy.functions.clips.mp4 import parse_mp4

    info = parse_mp4(lambda offset, length: PLAIN[offset : offset + length], len(PLAIN))
    spans = [(0, info.init_size)] + [(f.offset, f.offset + f.size) for f in info.fragments]
    for start, end in spans:
        store = Store(SEALED)
        body = b"".join(_serve(store, f"bytes={start}-{end - 1}").body)
        assert body == PLAIN[start:end]
        assert store.bytes_read == _minimal_sealed_bytes(SEALED, start, end)


def test_no_range_is_the_whole_plaintext_with_200() -> None:
    store = Store(SEALED)
    response = _serve(store, None)
    assert response.status == 200 and response.status_line == "200 OK"
    assert response.header("Content-Range") is None
    assert response.header("Content-Length") == str(len(PLAIN))
    assert response.header("Accept-Ranges") == "bytes"
    assert response.header("Content-Type") == "video/mp4"
    assert response.header("Cache-Control") == "private, max-age=300"
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Content-Disposition") is None
    assert b"".join(response.body) == PLAIN
    assert store.fetches == [(read_header(io.BytesIO(SEALED)).header_size, len(SEALED) - 64 - 1)]  # never the trailer


def test_start_beyond_the_end_is_416_without_fetching_content() -> None:
    store = Store(SEALED)
    response = _serve(store, f"bytes={len(PLAIN)}-")
    assert response.status == 416 and response.status_line == "416 Requested Range Not Satisfiable"
    assert response.header("Content-Range") == f"bytes */{len(PLAIN)}"
    assert response.header("Content-Length") == "0"
    assert list(response.body) == [] and store.fetches == []


def test_download_is_an_attachment_that_is_not_cached() -> None:
    response = _serve(Store(SEALED), "bytes=0-9", download_name='porch "cam"/\r\n2025-01-02 03:04.mp4')
    assert response.header("Cache-Control") == "private, no-store"
    disposition = response.header("Content-Disposition")
    assert disposition == "attachment; filename=\"2025-01-02_03_04.mp4\"; filename*=UTF-8''2025-01-02%2003%3A04.mp4"
    quoted = _serve(Store(SEALED), None, download_name='K\u00fcche\x00 "1".mp4')
    assert quoted.header("Content-Disposition") == (
        "attachment; filename=\"K_che__1_.mp4\"; filename*=UTF-8''K%C3%BCche%20%221%22.mp4"
    )


def test_body_can_be_dropped_without_fetching_and_closed_mid_stream() -> None:
    store = Store(SEALED)
    response = _serve(store, None)
    response.body.close()  # type: ignore[attr-defined]  # a HEAD request, or a client gone before the body
    assert store.fetches == []
    store = Store(SEALED)
    body = _serve(store, None).body
    pieces = iter(body)
    assert next(pieces) == PLAIN[:CHUNK]
    body.close()  # type: ignore[attr-defined]  # what a WSGI server does when the client hangs up
    assert store.closed == 1
    assert store.bytes_read < len(SEALED) // 2


def test_the_wrong_object_or_signer_does_not_open() -> None:
    with pytest.raises(SealedFormatError, match="copied or moved"):
        _serve(Store(_seal(PLAIN[:1000], key="clips/cam-1/other.cse")), None)
    with pytest.raises(SealedFormatError):
        _serve(Store(SEALED), None, signer_public_key=Ed25519PrivateKey.generate().public_key())


def test_a_tampered_chunk_stops_the_stream_before_its_bytes() -> None:
    header_size = read_header(io.BytesIO(SEALED)).header_size
    bad_index = 2
    tampered = bytearray(SEALED)
    tampered[header_size + bad_index * (CHUNK + TAG_SIZE) + 5] ^= 1
    sent: list[bytes] = []
    with pytest.raises(SealedFormatError, match="chunk 2 failed authentication"):
        sent.extend(_serve(Store(bytes(tampered)), None).body)
    assert b"".join(sent) == PLAIN[: bad_index * CHUNK]  # only authenticated chunks went out


def test_header_injection_through_the_content_type_is_refused() -> None:
    with pytest.raises(ValueError, match="media type"):
        _serve(Store(SEALED), None, content_type="video/mp4\r\nSet-Cookie: a=b")


def test_an_empty_plaintext_is_served_as_an_empty_200() -> None:
    store = Store(_seal(b""))
    response = _serve(store, "bytes=-10")
    assert response.status == 200 and response.header("Content-Length") == "0"
    assert list(response.body) == [] and store.fetches == []
    assert _serve(Store(_seal(b"")), "bytes=0-").status == 416


def test_streaming_a_large_object_holds_a_few_chunks_of_memory() -> None:
    chunk = 64 * 1024
    plain = os.urandom(8 * 1024 * 1024)
    sealed = _seal(plain, chunk_size=chunk)
    store = Store(sealed)
    tracemalloc.start()
    try:
        response = _serve(store, "bytes=100-")
        total = 0
        for piece in response.body:
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == len(plain) - 100
    # the Store's slice of the sealed bytes is one copy (that is the "network"); beyond it, a few chunks at most
    assert peak - len(sealed) < 6 * chunk, peak
