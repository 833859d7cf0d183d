"""The sealed-object format: vectors, round trips, tamper detection (including by the holder of the deployment private
key), fuzzing, range reads and memory bounds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from cryospy.common.keys import DeploymentPublicKey, UnlockedKeys
from cryospy.common.sealed import (
    MAX_HEADER_SIZE,
    ZERO_HASH,
    Layout,
    SealedFormatError,
    ciphertext_range,
    open_bytes,
    open_header,
    open_sealed,
    read_header,
    seal,
    seal_bytes,
    verify_content,
    verify_header_signature,
)
from cryospy.common.sealed_envelope import unwrap_data_key
from cryospy.common.sealed_format import TAG_SIZE, TRAILER_SIZE, chunk_nonce, content_message

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
VECTORS = json.loads((VECTORS_DIR / "sealed-v2.json").read_text("utf-8"))
KEY = "clips/cam-1/2025/01/02/20250102T030405.006Z-7.mp4"
WHEN = datetime(2025, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)


def _ring(*privates: X25519PrivateKey) -> UnlockedKeys:
    keys = {DeploymentPublicKey.from_public(p.public_key()).key_id: p for p in privates}
    return UnlockedKeys(
        private_keys=keys,
        current_key_id=next(iter(keys)),
        server_signing_key=Ed25519PrivateKey.generate(),
        index_key=bytes(32),
    )


DEPLOYMENT = X25519PrivateKey.generate()
RECIPIENT = DeploymentPublicKey.from_public(DEPLOYMENT.public_key())
RING = _ring(DEPLOYMENT)
DEVICE = Ed25519PrivateKey.generate()
OPEN = {"keyring": RING, "signer_public_key": DEVICE.public_key()}


def _seal(data: bytes, *, chunk_size: int = 64, object_key: str = KEY, sequence: int = 7, **extra) -> bytes:
    kwargs = {
        "object_key": object_key,
        "device_id": "cam-1",
        "sequence": sequence,
        "captured_at": WHEN,
        "content_type": "video/mp4",
        "prev_hash": ZERO_HASH,
        "recipient": RECIPIENT,
        "signer": DEVICE,
        "chunk_size": chunk_size,
    } | extra
    return seal_bytes(data, **kwargs)[0]


def _rejects(blob: bytes, object_key: str | None = KEY) -> None:
    """Both ways of checking a whole object must refuse it: a full open with keys, and the keyless content check."""
    with pytest.raises(SealedFormatError):
        open_bytes(blob, expected_object_key=object_key, **OPEN)
    with pytest.raises(SealedFormatError):
        verify_content(io.BytesIO(blob), signer_public_key=DEVICE.public_key(), expected_object_key=object_key)


def _chunks(blob: bytes, chunk_size: int = 64) -> tuple[bytes, list[bytes], bytes]:
    """Header, sealed chunks and trailer of ``blob``."""
    size = read_header(io.BytesIO(blob)).header_size
    body = blob[size:-TRAILER_SIZE]
    step = chunk_size + TAG_SIZE
    return blob[:size], [body[i : i + step] for i in range(0, len(body), step)], blob[-TRAILER_SIZE:]


# --- known-answer vectors -------------------------------------------------------------------------------------


def _vector_keys() -> tuple[UnlockedKeys, DeploymentPublicKey, dict[str, Ed25519PrivateKey]]:
    keys = VECTORS["keys"]
    private = X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["deployment_x25519_private"]))
    signers = {
        "device": Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["device_ed25519_private"])),
        "server": Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keys["server_ed25519_private"])),
    }
    recipient = DeploymentPublicKey.from_text(keys["deployment_public_text"])
    assert recipient.raw.hex() == keys["deployment_x25519_public"]
    return _ring(private), recipient, signers


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_seals_to_the_expected_bytes(vector: dict) -> None:
    _, recipient, signers = _vector_keys()
    given_ = vector["inputs"]
    draws = [bytes.fromhex(given_["rng_data_key"]), bytes.fromhex(given_["rng_ephemeral_private_key"])]
    sealed, header = seal_bytes(
        bytes.fromhex(given_["plaintext"]),
        object_key=given_["object_key"],
        device_id=given_["device_id"],
        sequence=given_["sequence"],
        captured_at=datetime.fromisoformat(given_["captured_at"]),
        content_type=given_["content_type"],
        prev_hash=bytes.fromhex(given_["prev_hash"]),
        recipient=recipient,
        signer=signers[given_["signer"]],
        chunk_size=given_["chunk_size"],
        rng=lambda size: draws.pop(0),
    )
    assert sealed.hex() == vector["expected"]["sealed"]
    assert header.header_hash.hex() == vector["expected"]["header_hash"]
    assert header.header_size == vector["expected"]["header_size"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_opens_to_the_expected_plaintext(vector: dict) -> None:
    ring, _, signers = _vector_keys()
    given_ = vector["inputs"]
    sealed = bytes.fromhex(vector["expected"]["sealed"])
    signer = signers[given_["signer"]].public_key()
    plain = open_bytes(sealed, keyring=ring, signer_public_key=signer, expected_object_key=given_["object_key"])
    assert plain.hex() == given_["plaintext"]
    assert verify_content(io.BytesIO(sealed), signer_public_key=signer) == read_header(io.BytesIO(sealed))
    header = read_header(io.BytesIO(sealed))
    assert hashlib.sha256(sealed[header.header_size : -TRAILER_SIZE]).hexdigest() == vector["expected"]["body_sha256"]
    assert sealed[-TRAILER_SIZE:].hex() == vector["expected"]["trailer"]
    assert header.sequence == given_["sequence"]
    assert header.captured_at == datetime.fromisoformat(given_["captured_at"])
    assert header.prev_hash.hex() == given_["prev_hash"]
    assert header.key_id == VECTORS["keys"]["deployment_key_id"]


def test_vectors_chain_to_each_other() -> None:
    hashes = {v["inputs"]["sequence"]: v for v in VECTORS["vectors"] if v["inputs"]["device_id"] == "cam-1"}
    for seq in range(1, 4):
        assert hashes[seq]["inputs"]["prev_hash"] == hashes[seq - 1]["expected"]["header_hash"]


@pytest.mark.parametrize("case", VECTORS["must_reject"], ids=lambda c: c["name"])
def test_vector_rejections(case: dict) -> None:
    ring, _, signers = _vector_keys()
    device = signers["device"].public_key()
    with pytest.raises(SealedFormatError):
        open_bytes(bytes.fromhex(case["sealed"]), keyring=ring, signer_public_key=device)
    with pytest.raises(SealedFormatError):
        verify_content(io.BytesIO(bytes.fromhex(case["sealed"])), signer_public_key=device)


def test_committed_vectors_match_the_generator() -> None:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS_DIR / "make_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (VECTORS_DIR / "sealed-v2.json").read_text("utf-8"), (
        "tests/vectors/sealed-v2.json is stale: run python tests/vectors/make_vectors.py"
    )


# --- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 127, 128, 129, 1000])
def test_round_trip_at_chunk_edges(size: int) -> None:
    data = os.urandom(size)
    blob = _seal(data)
    assert open_bytes(blob, expected_object_key=KEY, **OPEN) == data
    reader = open_sealed(io.BytesIO(blob), **OPEN)
    assert reader.plaintext_size == size
    assert b"".join(reader.iter_plaintext()) == data
    assert reader.layout.chunk_count == max(1, -(-size // 64))
    assert len(blob) == reader.layout.object_size == Layout.for_plaintext(reader.header, size).object_size


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=1500),
    chunk_size=st.integers(16, 200),
    bounds=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_round_trip_and_ranges_property(data: bytes, chunk_size: int, bounds: tuple[float, float]) -> None:
    blob = _seal(data, chunk_size=chunk_size)
    assert open_bytes(blob, **OPEN) == data
    start, end = sorted(int(b * len(data)) for b in bounds)
    reader = open_sealed(io.BytesIO(blob), **OPEN)
    assert reader.read_range(start, end) == data[start:end]
    first, stop = ciphertext_range(reader.header, len(blob), start, end)
    assert stop <= reader.layout.trailer_offset == len(blob) - TRAILER_SIZE
    pieces = reader.decryptor.iter_range(reader.layout, start, end, blob[first:stop])
    assert b"".join(pieces) == data[start:end]
    if data:
        assert reader.layout.ciphertext_range(0, len(data))[1] == reader.layout.trailer_offset


def test_older_cryptography_without_encrypt_into_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import cryospy.common.sealed_envelope as envelope

    data = os.urandom(300)
    draws = [os.urandom(32), os.urandom(32)]
    fast = _seal(data, rng=lambda n, d=list(draws): d.pop(0))
    monkeypatch.setattr(envelope, "HAS_AEAD_INTO", False)
    assert _seal(data, rng=lambda n, d=list(draws): d.pop(0)) == fast
    reader = open_sealed(io.BytesIO(fast), **OPEN)
    out = io.BytesIO()
    reader.copy_to(out)
    assert out.getvalue() == data


class _Trickle(io.RawIOBase):
    """A pipe-like source: short reads of random sizes and no seek."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data, self._pos, self._rng = data, 0, random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        size = min(len(buffer), self._rng.randint(1, 50), len(self._data) - self._pos)
        buffer[:size] = self._data[self._pos : self._pos + size]
        self._pos += size
        return size


def test_short_reads_from_a_pipe_give_the_same_object() -> None:
    data = os.urandom(1000)
    draws = [os.urandom(32), os.urandom(32)]
    out_a, out_b = io.BytesIO(), io.BytesIO()
    common = {
        "object_key": KEY,
        "device_id": "cam-1",
        "sequence": 1,
        "captured_at": WHEN,
        "content_type": "video/mp4",
        "prev_hash": ZERO_HASH,
        "recipient": RECIPIENT,
        "signer": DEVICE,
        "chunk_size": 64,
    }
    seal(io.BytesIO(data), out_a, rng=lambda n, d=list(draws): d.pop(0), **common)
    seal(_Trickle(data, 1), out_b, rng=lambda n, d=list(draws): d.pop(0), **common)
    assert out_a.getvalue() == out_b.getvalue()
    reader = open_sealed(_Trickle(out_a.getvalue(), 2), size=len(out_a.getvalue()), **OPEN)  # type: ignore[arg-type]
    assert b"".join(reader.iter_plaintext()) == data


class _Growing(io.BytesIO):
    """A seekable source that announces fewer bytes than it delivers, like a file still being written."""

    def seek(self, offset: int, whence: int = 0) -> int:
        position = super().seek(offset, whence)
        return 10 if whence == io.SEEK_END else position


@pytest.mark.parametrize("size", [11, 64, 65, 300])
def test_a_source_longer_than_announced_is_sealed_whole(size: int) -> None:
    data = os.urandom(size)
    out = io.BytesIO()
    seal(
        _Growing(data),
        out,
        object_key=KEY,
        device_id="cam-1",
        sequence=1,
        captured_at=WHEN,
        content_type="video/mp4",
        prev_hash=ZERO_HASH,
        recipient=RECIPIENT,
        signer=DEVICE,
        chunk_size=64,
    )
    assert open_bytes(out.getvalue(), **OPEN) == data


def test_header_fields_and_millisecond_capture_time() -> None:
    blob = _seal(b"x", captured_at=datetime(2025, 6, 1, 14, 0, 0, 123999, tzinfo=timezone(timedelta(hours=2))))
    header = read_header(io.BytesIO(blob))
    assert header.captured_at == datetime(2025, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert (header.object_key, header.device_id, header.sequence) == (KEY, "cam-1", 7)
    assert header.key_id == RECIPIENT.key_id and header.content_type == "video/mp4"
    assert len(header.header_hash) == 32 and header.prev_hash == ZERO_HASH
    verify_header_signature(header, DEVICE.public_key())


def test_read_header_leaves_the_stream_at_the_first_chunk() -> None:
    blob = _seal(b"abc")
    stream = io.BytesIO(blob + b"trailing")
    header = read_header(stream)
    assert stream.tell() == header.header_size


def test_server_sealed_objects_open_with_the_server_verify_key() -> None:
    blob = seal_bytes(
        b"thumb",
        object_key="thumbs/cam-1/x.jpg",
        device_id="server",
        sequence=0,
        captured_at=WHEN,
        content_type="image/jpeg",
        prev_hash=ZERO_HASH,
        recipient=RING.current_public_key,
        signer=RING.server_signing_key,
    )[0]
    assert open_bytes(blob, keyring=RING, signer_public_key=RING.server_signing_key.public_key()) == b"thumb"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"captured_at": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"prev_hash": b"short"}, "prev_hash"),
        ({"object_key": "clips/\nfake"}, "control characters"),
        ({"object_key": ""}, "non-empty"),
        ({"object_key": "k" * 1025}, "limit is 1024"),
        ({"sequence": -1}, "sequence"),
        ({"chunk_size": 8}, "chunk_size"),
    ],
)
def test_bad_arguments_are_refused_before_writing(override: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _seal(b"data", **override)


# --- tamper detection -----------------------------------------------------------------------------------------


def test_every_single_bit_flip_is_detected() -> None:
    blob = _seal(os.urandom(40), chunk_size=16)  # three chunks: two full, one partial
    for position in range(len(blob)):
        for bit in range(8):
            damaged = bytearray(blob)
            damaged[position] ^= 1 << bit
            _rejects(bytes(damaged))


def test_truncation_anywhere_is_detected_including_every_chunk_boundary() -> None:
    blob = _seal(os.urandom(200))
    header, chunks, _ = _chunks(blob)
    boundaries = {len(header) + sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks))}
    assert len(boundaries) == 4 and len(blob) - TRAILER_SIZE in boundaries  # the last one: trailer missing
    for length in range(len(blob)):
        _rejects(blob[:length])


def test_extension_is_detected() -> None:
    blob = _seal(os.urandom(100))
    for extra in (b"\x00", os.urandom(16), os.urandom(80)):
        _rejects(blob + extra)


def test_dropped_chunks_are_detected() -> None:
    header, chunks, trailer = _chunks(_seal(os.urandom(64 * 3 + 10)))
    for drop in range(len(chunks)):
        _rejects(header + b"".join(c for i, c in enumerate(chunks) if i != drop) + trailer)


def test_swapped_and_repeated_chunks_are_detected() -> None:
    header, chunks, trailer = _chunks(_seal(os.urandom(64 * 4)))
    for i in range(len(chunks)):
        for j in range(len(chunks)):
            if i != j:
                order = list(chunks)
                order[i], order[j] = order[j], order[i]
                _rejects(header + b"".join(order) + trailer)
                repeated = list(chunks)
                repeated[i] = chunks[j]
                _rejects(header + b"".join(repeated) + trailer)


def test_a_header_moved_onto_another_objects_body_is_detected() -> None:
    data = os.urandom(150)
    header_a, chunks_a, trailer_a = _chunks(_seal(data))
    header_b, chunks_b, trailer_b = _chunks(_seal(data))  # same plaintext, key and device: only the data key differs
    _rejects(header_a + b"".join(chunks_b) + trailer_b)
    _rejects(header_b + b"".join(chunks_a) + trailer_a)
    _rejects(header_a + b"".join(chunks_b) + trailer_a)
    _rejects(header_a + chunks_a[0] + chunks_b[1] + chunks_a[2] + trailer_a)


def test_an_object_copied_to_another_key_is_rejected() -> None:
    blob = _seal(b"clip")
    with pytest.raises(SealedFormatError, match="copied or moved"):
        open_bytes(blob, expected_object_key="clips/cam-1/other.mp4", **OPEN)
    assert open_bytes(blob, expected_object_key=KEY, **OPEN) == b"clip"


def test_another_devices_key_does_not_verify() -> None:
    with pytest.raises(SealedFormatError, match="signature does not verify"):
        open_bytes(_seal(b"clip"), keyring=RING, signer_public_key=Ed25519PrivateKey.generate().public_key())


def test_wrong_private_key_gives_a_clear_error() -> None:
    impostor = X25519PrivateKey.generate()
    same_id = UnlockedKeys(
        private_keys={RECIPIENT.key_id: impostor},
        current_key_id=RECIPIENT.key_id,
        server_signing_key=Ed25519PrivateKey.generate(),
        index_key=bytes(32),
    )
    with pytest.raises(SealedFormatError, match="does not unwrap"):
        open_bytes(_seal(b"clip"), keyring=same_id, signer_public_key=DEVICE.public_key())
    with pytest.raises(SealedFormatError, match="does not hold"):
        open_bytes(_seal(b"clip"), keyring=_ring(impostor), signer_public_key=DEVICE.public_key())


def test_a_range_read_detects_a_bad_covering_chunk_only() -> None:
    data = os.urandom(64 * 4)
    damaged = bytearray(_seal(data))
    header, chunks, _ = _chunks(bytes(damaged))
    damaged[len(header) + 2 * len(chunks[0]) + 3] ^= 0x80  # inside chunk 2
    reader = open_sealed(io.BytesIO(bytes(damaged)), **OPEN)
    assert reader.read_range(0, 128) == data[:128]
    with pytest.raises(SealedFormatError, match="chunk 2"):
        reader.read_range(100, 140)


def test_verify_length_catches_truncation_a_range_read_cannot_see() -> None:
    blob = _seal(os.urandom(64 * 4))
    header, chunks, trailer = _chunks(blob)
    cut = header + b"".join(chunks[:2]) + trailer  # cut at a chunk boundary, trailer moved up
    reader = open_sealed(io.BytesIO(cut), **OPEN)
    assert len(reader.read_range(0, 10)) == 10  # authentic bytes, but the object's end is not proven
    with pytest.raises(SealedFormatError, match="does not match the signature"):
        reader.verify_length()
    open_sealed(io.BytesIO(blob), **OPEN).verify_length()


# --- content trailer: the server, holding the deployment private key, cannot edit a clip --------------------------


def _unwrapped_data_key(blob: bytes) -> bytes:
    """What the unlocked server can do for any object: unwrap its data key with the deployment private key."""
    header = read_header(io.BytesIO(blob))
    return unwrap_data_key(header, RING.private_key(header.key_id))


def _reencrypt(blob: bytes, plaintext: bytes, chunk_size: int = 64) -> bytes:
    """The attack the trailer exists for: new content sealed under the device's signed header, original trailer kept."""
    header = read_header(io.BytesIO(blob))
    aead = AESGCM(_unwrapped_data_key(blob))
    pieces = [plaintext[i : i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    chunks = [aead.encrypt(chunk_nonce(i, i == len(pieces) - 1), p, header.header_hash) for i, p in enumerate(pieces)]
    return header.encoded + b"".join(chunks) + blob[-TRAILER_SIZE:]


def test_content_reencrypted_by_the_deployment_key_holder_is_rejected() -> None:
    original = b"the burglar at the back door, 02:14" + os.urandom(200)
    blob = _seal(original)
    forged = _reencrypt(blob, b"an empty garden, nothing happens..." + os.urandom(200))
    header_size = read_header(io.BytesIO(blob)).header_size
    assert len(forged) == len(blob) and forged[:header_size] == blob[:header_size]
    assert forged[-TRAILER_SIZE:] == blob[-TRAILER_SIZE:]
    assert forged[header_size:-TRAILER_SIZE] != blob[header_size:-TRAILER_SIZE]
    reader = open_sealed(io.BytesIO(forged), expected_object_key=KEY, **OPEN)
    assert reader.read_range(0, 13) == b"an empty gard"  # GCM alone cannot tell: a range read skips the trailer
    with pytest.raises(SealedFormatError, match="re-encrypted"):
        verify_content(io.BytesIO(forged), signer_public_key=DEVICE.public_key())
    with pytest.raises(SealedFormatError, match="re-encrypted"):
        open_bytes(forged, **OPEN)
    with pytest.raises(SealedFormatError, match="re-encrypted"):
        reader.verify_length()
    with pytest.raises(SealedFormatError, match="re-encrypted"):
        open_sealed(io.BytesIO(forged), **OPEN).copy_to(io.BytesIO())
    pieces = []
    with pytest.raises(SealedFormatError, match="re-encrypted"):
        pieces.extend(open_sealed(io.BytesIO(forged), **OPEN).iter_plaintext())
    assert len(pieces) == 4  # every piece came out, unverified, before the trailer failed
    assert open_bytes(blob, **OPEN) == original


def test_a_trailer_resigned_by_the_server_key_is_rejected() -> None:
    """The server can sign, but not as the device: a fresh trailer over forged content under its own key fails."""
    blob = _seal(os.urandom(100))
    forged = _reencrypt(blob, os.urandom(100))
    header = read_header(io.BytesIO(forged))
    layout = Layout.for_object(header, len(forged))
    digest = hashlib.sha256(forged[header.header_size : -TRAILER_SIZE]).digest()
    message = content_message(header.header_hash, layout.chunk_count, layout.plaintext_size, digest)
    resigned = forged[:-TRAILER_SIZE] + RING.server_signing_key.sign(message)
    _rejects(resigned)
    assert verify_content(  # the same trailer under the device key is exactly what a genuine object carries
        io.BytesIO(forged[:-TRAILER_SIZE] + DEVICE.sign(message)), signer_public_key=DEVICE.public_key()
    )


_GCM_R = 0xE1 << 120


def _gf_mul(x: int, y: int) -> int:
    """Multiplication in GCM's GF(2^128), bit-reflected as in NIST SP 800-38D, algorithm 1."""
    z = 0
    for bit in range(127, -1, -1):
        if (y >> bit) & 1:
            z ^= x
        x = (x >> 1) ^ _GCM_R if x & 1 else x >> 1
    return z


def _gf_pow(x: int, n: int) -> int:
    result = 1 << 127  # the field's one in GCM's bit order
    while n:
        if n & 1:
            result = _gf_mul(result, x)
        x, n = _gf_mul(x, x), n >> 1
    return result


def _ghash(h: int, aad: bytes, ciphertext: bytes) -> int:
    padded = aad + bytes(-len(aad) % 16) + ciphertext + bytes(-len(ciphertext) % 16)
    blocks = [int.from_bytes(padded[i : i + 16], "big") for i in range(0, len(padded), 16)]
    y = 0
    for block in [*blocks, (len(aad) * 8) << 64 | len(ciphertext) * 8]:
        y = _gf_mul(y ^ block, h)
    return y


def _same_tag_forgery(data_key: bytes, nonce: bytes, aad: bytes, sealed_chunk: bytes, wanted: bytes) -> bytes:
    """A chunk that decrypts to ``wanted`` except in its last 16 bytes, with exactly ``sealed_chunk``'s GCM tag.

    GHASH is linear in the ciphertext: with the data key, one free block absorbs any change, so a GCM tag does not
    commit to its chunk for whoever holds the key. This is why the trailer signs a SHA-256 of the bytes, not the tags.
    """
    ciphertext, tag = sealed_chunk[:-TAG_SIZE], sealed_chunk[-TAG_SIZE:]
    assert len(ciphertext) % 16 == 0 and len(wanted) == len(ciphertext)
    plain = AESGCM(data_key).decrypt(nonce, sealed_chunk, aad)
    forged = bytearray(c ^ p ^ w for c, p, w in zip(ciphertext, plain, wanted, strict=True))  # `wanted`, encrypted
    free = len(forged) - 16
    forged[free:] = ciphertext[free:]
    h = int.from_bytes(Cipher(algorithms.AES(data_key), modes.ECB()).encryptor().update(bytes(16)), "big")
    delta = _ghash(h, aad, bytes(forged)) ^ _ghash(h, aad, ciphertext)
    # The last ciphertext block enters GHASH multiplied by H^2 (the length block follows it): cancel delta there.
    fix = _gf_mul(delta, _gf_pow(_gf_mul(h, h), (1 << 128) - 2))
    forged[free:] = (int.from_bytes(ciphertext[free:], "big") ^ fix).to_bytes(16, "big")
    return bytes(forged) + tag


def test_a_chunk_forged_to_keep_its_gcm_tag_is_rejected() -> None:
    """A trailer over the GCM tags alone would accept this object: every tag is unchanged and every chunk decrypts."""
    blob = _seal(os.urandom(64 * 3))
    header, chunks, trailer = _chunks(blob)
    aad = read_header(io.BytesIO(blob)).header_hash
    wanted = b"02:14 nothing to see here. 02:15 nothing to see here. 02:16 ...."
    forged_chunk = _same_tag_forgery(_unwrapped_data_key(blob), chunk_nonce(1, False), aad, chunks[1], wanted)
    assert forged_chunk != chunks[1] and forged_chunk[-TAG_SIZE:] == chunks[1][-TAG_SIZE:]
    forged = header + chunks[0] + forged_chunk + chunks[2] + trailer
    assert open_sealed(io.BytesIO(forged), **OPEN).read_range(64, 64 + 48) == wanted[:48]
    _rejects(forged)


def test_trailer_damage_of_every_kind_is_rejected() -> None:
    blob = _seal(os.urandom(150))
    other = _seal(os.urandom(150))  # same device, same size: only its trailer's signed content differs
    _rejects(blob[:-TRAILER_SIZE] + other[-TRAILER_SIZE:])
    _rejects(blob[:-TRAILER_SIZE])
    _rejects(blob[:-TRAILER_SIZE] + bytes(TRAILER_SIZE))
    for position in range(len(blob) - TRAILER_SIZE, len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= 0x04
        _rejects(bytes(damaged))


def test_verify_content_needs_no_decryption_key_and_reads_the_object_once() -> None:
    blob = _seal(os.urandom(1000), chunk_size=64)
    source = _Counting(b"prefix" + blob)
    source.seek(6)
    header = verify_content(source, signer_public_key=DEVICE.public_key(), expected_object_key=KEY)
    assert header == read_header(io.BytesIO(blob)) and source.bytes_read == len(blob)
    piped = _Trickle(blob, 3)  # no seek: a forward pass with the size given
    assert verify_content(piped, signer_public_key=DEVICE.public_key(), size=len(blob)) == header  # type: ignore[arg-type]
    with pytest.raises(SealedFormatError, match="copied or moved"):
        verify_content(io.BytesIO(blob), signer_public_key=DEVICE.public_key(), expected_object_key="clips/x.mp4")
    with pytest.raises(SealedFormatError, match="signature does not verify"):
        verify_content(io.BytesIO(blob), signer_public_key=RING.server_signing_key.public_key())
    with pytest.raises(SealedFormatError, match="ends"):
        verify_content(io.BytesIO(blob[:-100]), signer_public_key=DEVICE.public_key(), size=len(blob))


class _Counting(io.BytesIO):
    """Counts the bytes read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        got = super().readinto(buffer)
        self.bytes_read += got
        return got


def test_a_version_1_object_is_refused_with_a_clear_reason() -> None:
    blob = bytearray(_seal(b"clip"))
    blob[8] = 1
    with pytest.raises(SealedFormatError, match=r"version 1 .* predates"):
        read_header(io.BytesIO(bytes(blob)))


# --- fuzzing --------------------------------------------------------------------------------------------------


def _mutate(rng: random.Random, blob: bytes) -> bytes:
    data = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            del data[pos : pos + rng.randint(1, 40)]
        elif kind == 2:
            data[pos:pos] = os.urandom(rng.randint(1, 40))
        elif kind == 3:
            del data[pos:]
        elif kind == 4 and len(data) > 14:  # rewrite a length or size field in the header's first bytes
            field = rng.choice([10, 11, 12, 13, 14, 15, 144, 145])
            if field < len(data):
                data[field] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif kind == 5:
            start = rng.randrange(len(data) + 1)
            data[start:start] = data[rng.randrange(len(data) + 1) :][: rng.randint(1, 100)]
    return bytes(data)


def test_fuzzed_inputs_raise_only_the_format_error() -> None:
    rng = random.Random(20250102)
    valid = [_seal(os.urandom(n), chunk_size=c) for n, c in [(0, 16), (1, 64), (100, 16), (300, 64)]]
    prefix = valid[0][:12]
    outcomes = {"rejected": 0, "opened": 0, "verified": 0}
    for round_ in range(10_000):
        kind = round_ % 4
        if kind == 0:
            candidate = os.urandom(rng.randint(0, 400))
        elif kind == 1:
            candidate = prefix + os.urandom(rng.randint(0, 600))
        else:
            candidate = _mutate(rng, rng.choice(valid))
        try:
            verify_content(io.BytesIO(candidate), signer_public_key=DEVICE.public_key())
        except SealedFormatError:
            pass
        else:  # the keyless check is as strict as a full open
            assert candidate in valid, f"mutated object verified: {candidate.hex()}"
            outcomes["verified"] += 1
        try:
            read_header(io.BytesIO(candidate))
            plain = open_bytes(candidate, **OPEN)
        except SealedFormatError:
            outcomes["rejected"] += 1
        else:  # only an unchanged object may open
            assert candidate in valid, f"mutated object opened: {candidate.hex()}"
            assert plain is not None
            outcomes["opened"] += 1
    assert outcomes["rejected"] >= 9_900 and outcomes["verified"] == outcomes["opened"]


# --- ranges and layout ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, (1 << 30) - (1 << 20)))
def test_a_one_mib_range_touches_at_most_two_chunks(start: int) -> None:
    layout = Layout(header_size=300, chunk_size=1 << 20, chunk_count=1 << 10, plaintext_size=1 << 30)
    span = layout.chunk_span(start, start + (1 << 20))
    assert 1 <= len(span) <= 2
    first, stop = layout.ciphertext_range(start, start + (1 << 20))
    assert stop - first == len(span) * ((1 << 20) + TAG_SIZE)
    assert layout.http_range(start, start + 1) == f"bytes={first}-{first + (1 << 20) + TAG_SIZE - 1}"


def test_layout_rejects_sizes_no_sealer_produces() -> None:
    header = read_header(io.BytesIO(_seal(b"")))
    with pytest.raises(SealedFormatError, match="too short"):
        Layout.for_object(header, header.header_size + 15 + TRAILER_SIZE)
    with pytest.raises(SealedFormatError, match="too short"):
        Layout.for_object(header, header.header_size + 16)  # one empty chunk, no trailer
    with pytest.raises(SealedFormatError):
        Layout.for_object(header, header.header_size + 80 + 16 + TRAILER_SIZE)  # a full chunk then an empty one
    empty = Layout.for_object(header, header.header_size + 16 + TRAILER_SIZE)
    assert (empty.chunk_count, empty.plaintext_size, empty.trailer_offset) == (1, 0, header.header_size + 16)
    with pytest.raises(ValueError, match="clamp"):
        empty.chunk_span(0, 1)


def test_range_fetch_from_a_stream_and_an_empty_range() -> None:
    data = os.urandom(500)
    blob = _seal(data)
    header = read_header(io.BytesIO(blob[:MAX_HEADER_SIZE]))
    decryptor = open_header(header, expected_object_key=KEY, **OPEN)
    layout = Layout.for_object(header, len(blob))
    first, stop = layout.ciphertext_range(130, 260)
    assert b"".join(decryptor.iter_range(layout, 130, 260, io.BytesIO(blob[first:stop]))) == data[130:260]
    assert list(decryptor.iter_range(layout, 10, 10, b"")) == []
    with pytest.raises(SealedFormatError):
        list(decryptor.iter_range(layout, 130, 260, blob[first : stop - 1]))


# --- constant memory ------------------------------------------------------------------------------------------


class _Pattern(io.RawIOBase):
    """``size`` bytes of a repeating pattern produced on demand: a large plaintext that occupies no memory."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = bytes(range(256)) * 4096

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        size = min(len(buffer), len(self._block), self._left)
        buffer[:size] = self._block[:size]
        self._left -= size
        return size


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        self.count += len(data)
        return len(data)


class _VirtualSealed(io.RawIOBase):
    """A sealed object of any size whose chunks are encrypted on demand from a known data key (no storage).

    The trailer is genuine: chunks are hashed as they are first produced in order, and the trailer is signed once asked
    for (hashing any chunks not yet produced), so a sequential full read costs one encryption per chunk, not two.
    """

    def __init__(self, header_bytes: bytes, header_hash: bytes, data_key: bytes, plaintext_size: int) -> None:
        self._header, self._aad, self._aead = header_bytes, header_hash, AESGCM(data_key)
        self._layout = Layout(len(header_bytes), 1 << 20, max(1, -(-plaintext_size // (1 << 20))), plaintext_size)
        self._pos, self._cache = 0, (-1, b"")
        self._body_hash, self._hashed, self._trailer = hashlib.sha256(), 0, b""
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._layout.object_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _chunk(self, index: int) -> bytes:
        if self._cache[0] != index:
            last = index == self._layout.chunk_count - 1
            plain = bytes(self._layout.chunk_plaintext_size(index))
            self._cache = (index, self._aead.encrypt(chunk_nonce(index, last), plain, self._aad))
            if index == self._hashed:
                self._body_hash.update(self._cache[1])
                self._hashed += 1
        return self._cache[1]

    def _trailer_bytes(self) -> bytes:
        if not self._trailer:
            while self._hashed < self._layout.chunk_count:
                self._chunk(self._hashed)
            layout = self._layout
            digest = self._body_hash.digest()
            self._trailer = DEVICE.sign(content_message(self._aad, layout.chunk_count, layout.plaintext_size, digest))
        return self._trailer

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self._pos >= self._layout.object_size:
            return 0
        if self._pos < len(self._header):
            piece = self._header[self._pos :]
        elif self._pos >= self._layout.trailer_offset:
            piece = self._trailer_bytes()[self._pos - self._layout.trailer_offset :]
        else:
            step = self._layout.chunk_size + TAG_SIZE
            index, offset = divmod(self._pos - len(self._header), step)
            piece = self._chunk(index)[offset:]
        size = min(len(buffer), len(piece))
        buffer[:size] = piece[:size]
        self._pos += size
        self.bytes_read += size
        return size


def _virtual(plaintext_size: int) -> _VirtualSealed:
    data_key = os.urandom(32)
    draws = [data_key, os.urandom(32)]
    out = io.BytesIO()
    header = seal(
        io.BytesIO(b""),
        out,
        object_key=KEY,
        device_id="cam-1",
        sequence=1,
        captured_at=WHEN,
        content_type="video/mp4",
        prev_hash=ZERO_HASH,
        recipient=RECIPIENT,
        signer=DEVICE,
        rng=lambda n: draws.pop(0),
    )
    return _VirtualSealed(header.encoded, header.header_hash, data_key, plaintext_size)


def test_sealing_and_opening_use_constant_memory() -> None:
    size = 48 << 20
    tracemalloc.start()
    try:
        sink = _Sink()
        seal(
            _Pattern(size),
            sink,
            object_key=KEY,
            device_id="cam-1",
            sequence=1,
            captured_at=WHEN,
            content_type="video/mp4",
            prev_hash=ZERO_HASH,
            recipient=RECIPIENT,
            signer=DEVICE,
        )
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        source = _virtual(size)
        reader = open_sealed(source, **OPEN)
        out = _Sink()
        assert reader.copy_to(out) == size and out.count == size
        for piece in reader.iter_plaintext():
            assert len(piece) <= 1 << 20
        _, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.count == size + 48 * TAG_SIZE + read_header(io.BytesIO(source._header)).header_size + TRAILER_SIZE
    assert seal_peak < 5 << 20, f"sealing peaked at {seal_peak} bytes of Python memory"
    assert open_peak < 6 << 20, f"opening peaked at {open_peak} bytes of Python memory"


def test_a_one_mib_range_of_a_one_gib_object_reads_two_chunks() -> None:
    source = _virtual(1 << 30)
    reader = open_sealed(source, **OPEN)
    header_read = source.bytes_read
    start = (300 << 20) + 12345
    assert reader.read_range(start, start + (1 << 20)) == bytes(1 << 20)
    assert source.bytes_read - header_read == 2 * ((1 << 20) + TAG_SIZE)


def test_small_reads_in_one_chunk_decrypt_it_once() -> None:
    source = _virtual(3 << 20)
    reader = open_sealed(source, **OPEN)
    reader.read_range(16, 32)
    after_first = source.bytes_read
    for offset in range(100, 1 << 20, 4096):
        reader.read_range(offset, offset + 16)
    assert source.bytes_read == after_first


_RSS_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_sealed import _Pattern, _Sink, _virtual, seal, open_sealed, OPEN, KEY, WHEN, ZERO_HASH, RECIPIENT, DEVICE
def status(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])
before = status("VmRSS")
size = 2 << 30
seal(_Pattern(size), _Sink(), object_key=KEY, device_id="cam-1", sequence=1, captured_at=WHEN,
     content_type="video/mp4", prev_hash=ZERO_HASH, recipient=RECIPIENT, signer=DEVICE)
assert open_sealed(_virtual(size), **OPEN).copy_to(_Sink()) == size
print(before, status("VmHWM"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc")
def test_two_gib_seal_and_open_stay_under_64_mib_rss() -> None:
    """The whole process, test harness imports included, peaks under 64 MiB; the work itself adds a few MiB."""
    script = _RSS_SCRIPT.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    before_kib, peak_kib = map(int, done.stdout.split())
    assert peak_kib < 64 * 1024, f"peak RSS {peak_kib} KiB for a 2 GiB seal + open"
    assert peak_kib - before_kib < 12 * 1024, f"sealing and opening 2 GiB grew RSS by {peak_kib - before_kib} KiB"
