"""Regenerate ``sealed-v2.json``: known-answer vectors for the CryoSpy sealed-object format, version 2.

Every input — keys, the data key and ephemeral key the sealer would draw at random, capture times — is fixed here, and
Ed25519 signatures are deterministic, so the output is byte-for-byte reproducible. Another implementation can check
itself against the JSON without running Python; ``tests/unit/test_sealed.py`` checks both directions and that this
script still produces the committed file.

    python tests/vectors/make_vectors.py            # rewrite sealed-v2.json next to this script
    python tests/vectors/make_vectors.py --check    # exit 1 if the committed file is stale
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.sealed import ZERO_HASH, Layout, seal_bytes
from cryospy.common.sealed_format import TAG_SIZE, TRAILER_SIZE, chunk_nonce, content_message

OUTPUT = Path(__file__).with_name("sealed-v2.json")
_RAW = serialization.Encoding.Raw


def _secret(label: str) -> bytes:
    """32 fixed bytes named by a label, so each vector input is obviously not a real key."""
    return hashlib.sha256(b"CryoSpy test vector " + label.encode()).digest()


def _fixed_rng(*outputs: bytes) -> Callable[[int], bytes]:
    queue = list(outputs)

    def rng(size: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == size
        return value

    return rng


CASES: list[dict[str, Any]] = [
    {
        "name": "empty plaintext (one empty last chunk)",
        "plaintext": b"",
        "chunk_size": 64,
        "object_key": "clips/cam-1/2025/01/02/20250102T030405.006Z-0.mp4",
        "device_id": "cam-1",
        "sequence": 0,
        "captured_at": "2025-01-02T03:04:05.006Z",
        "content_type": "video/mp4",
    },
    {
        "name": "one byte",
        "plaintext": b"\x42",
        "chunk_size": 64,
        "object_key": "clips/cam-1/2025/01/02/20250102T030410.000Z-1.mp4",
        "device_id": "cam-1",
        "sequence": 1,
        "captured_at": "2025-01-02T03:04:10.000Z",
        "content_type": "video/mp4",
        "chain": True,
    },
    {
        "name": "exactly one full chunk",
        "plaintext": bytes(range(64)),
        "chunk_size": 64,
        "object_key": "clips/cam-1/2025/01/02/20250102T030420.500Z-2.mp4",
        "device_id": "cam-1",
        "sequence": 2,
        "captured_at": "2025-01-02T03:04:20.500Z",
        "content_type": "video/mp4",
        "chain": True,
    },
    {
        "name": "three chunks, last one partial",
        "plaintext": bytes(i * 7 % 256 for i in range(64 * 2 + 5)),
        "chunk_size": 64,
        "object_key": "clips/cam-1/2025/01/02/20250102T030430.999Z-3.mp4",
        "device_id": "cam-1",
        "sequence": 3,
        "captured_at": "2025-01-02T03:04:30.999Z",
        "content_type": "video/mp4",
        "chain": True,
    },
    {
        "name": "server-sealed thumbnail, non-ASCII key",
        "plaintext": b"\xff\xd8\xff\xe0 not really a JPEG \xff\xd9",
        "chunk_size": 16,
        "object_key": "thumbs/Küche/2025-01-02/0003.jpg",
        "device_id": "server",
        "sequence": 0,
        "captured_at": "1969-12-31T23:59:59.999Z",
        "content_type": "image/jpeg",
        "signer": "server",
    },
]


def _hex(raw: bytes) -> str:
    return raw.hex()


def build() -> dict[str, Any]:
    deployment = X25519PrivateKey.from_private_bytes(_secret("deployment X25519 key"))
    recipient = DeploymentPublicKey.from_public(deployment.public_key())
    signers = {
        "device": Ed25519PrivateKey.from_private_bytes(_secret("device Ed25519 key cam-1")),
        "server": Ed25519PrivateKey.from_private_bytes(_secret("server Ed25519 key")),
    }
    vectors = []
    prev_hash = ZERO_HASH
    for number, case in enumerate(CASES):
        signer = signers[case.get("signer", "device")]
        data_key, ephemeral = _secret(f"data key {number}"), _secret(f"ephemeral key {number}")
        chained = prev_hash if case.get("chain") else ZERO_HASH
        captured_at = datetime.fromisoformat(case["captured_at"]).astimezone(UTC)
        sealed, header = seal_bytes(
            case["plaintext"],
            object_key=case["object_key"],
            device_id=case["device_id"],
            sequence=case["sequence"],
            captured_at=captured_at,
            content_type=case["content_type"],
            prev_hash=chained,
            recipient=recipient,
            signer=signer,
            chunk_size=case["chunk_size"],
            rng=_fixed_rng(data_key, ephemeral),
        )
        prev_hash = header.header_hash
        vectors.append(
            {
                "name": case["name"],
                "inputs": {
                    "plaintext": _hex(case["plaintext"]),
                    "object_key": case["object_key"],
                    "device_id": case["device_id"],
                    "sequence": case["sequence"],
                    "captured_at": case["captured_at"],
                    "content_type": case["content_type"],
                    "prev_hash": _hex(chained),
                    "chunk_size": case["chunk_size"],
                    "signer": case.get("signer", "device"),
                    "rng_data_key": _hex(data_key),
                    "rng_ephemeral_private_key": _hex(ephemeral),
                },
                "expected": {
                    "header_size": header.header_size,
                    "header_hash": _hex(header.header_hash),
                    "ephemeral_public_key": _hex(header.ephemeral_public),
                    "wrapped_key": _hex(header.wrapped_key),
                    "header_signature": _hex(header.signature),
                    "body_sha256": _hex(hashlib.sha256(sealed[header.header_size : -TRAILER_SIZE]).digest()),
                    "trailer": _hex(sealed[-TRAILER_SIZE:]),
                    "sealed": _hex(sealed),
                },
            }
        )
    return {
        "description": "CryoSpy sealed-object format v2 known-answer vectors; see docs/sealed-format.md. "
        "The sealer draws rng_data_key first, then rng_ephemeral_private_key. body_sha256 is the SHA-256 of the "
        "chunks (everything between header and trailer). Every must_reject case must fail both a full open and a "
        "keyless content check with the device key. Regenerate with tests/vectors/make_vectors.py.",
        "keys": {
            "deployment_x25519_private": _hex(_secret("deployment X25519 key")),
            "deployment_x25519_public": _hex(recipient.raw),
            "deployment_key_id": recipient.key_id,
            "deployment_public_text": recipient.to_text(),
            "device_ed25519_private": _hex(_secret("device Ed25519 key cam-1")),
            "device_ed25519_public": _hex(signers["device"].public_key().public_bytes(_RAW, _raw_pub())),
            "server_ed25519_private": _hex(_secret("server Ed25519 key")),
            "server_ed25519_public": _hex(signers["server"].public_key().public_bytes(_RAW, _raw_pub())),
        },
        "vectors": vectors,
        "must_reject": _rejections(vectors[3], vectors[2], signers["server"]),
    }


def _raw_pub() -> serialization.PublicFormat:
    return serialization.PublicFormat.Raw


def _rejections(vector: dict[str, Any], other: dict[str, Any], server: Ed25519PrivateKey) -> list[dict[str, Any]]:
    """Damaged copies of one valid three-chunk object that every implementation must refuse (opened under its own key);
    ``other`` is an earlier object of the same device, ``server`` a key that is not the device's.
    """
    sealed = bytes.fromhex(vector["expected"]["sealed"])
    header = vector["expected"]["header_size"]
    step = vector["inputs"]["chunk_size"] + TAG_SIZE
    chunk = [sealed[header + i * step : header + (i + 1) * step] for i in range(3)]
    trailer = sealed[-TRAILER_SIZE:]
    flipped = bytearray(sealed)
    flipped[header + 5] ^= 0x01
    trailer_flipped = bytearray(sealed)
    trailer_flipped[-TRAILER_SIZE + 9] ^= 0x20
    forged = _reencrypted(sealed, header, vector, b"forged footage: the server rewrote this clip. ")
    cases = {
        "truncated after the second chunk (a chunk boundary)": sealed[: header + 2 * step],
        "trailer missing (cut after the last chunk)": sealed[:-TRAILER_SIZE],
        "trailer cut by one byte": sealed[:-1],
        "middle chunk dropped": sealed[:header] + chunk[0] + chunk[2] + trailer,
        "first two chunks swapped": sealed[:header] + chunk[1] + chunk[0] + chunk[2] + trailer,
        "one ciphertext bit flipped": bytes(flipped),
        "one trailer bit flipped": bytes(trailer_flipped),
        "trailer of another object of the same device": sealed[:-TRAILER_SIZE]
        + bytes.fromhex(other["expected"]["trailer"]),
        "content re-encrypted under the original header and trailer with the unwrapped data key": forged,
        "re-encrypted content with a trailer signed by a key other than the header's": forged[:-TRAILER_SIZE]
        + _trailer(server, forged, header, vector["inputs"]["chunk_size"]),
        "one byte appended": sealed + b"\x00",
        "sequence number in the header changed": sealed[:20] + bytes([sealed[20] ^ 0x01]) + sealed[21:],
    }
    return [
        {"name": name, "object_key": vector["inputs"]["object_key"], "sealed": _hex(data)}
        for name, data in cases.items()
    ]


def _reencrypted(sealed: bytes, header_size: int, vector: dict[str, Any], text: bytes) -> bytes:
    """What a holder of the deployment private key can do: ``text``, repeated to the original plaintext size, encrypted
    under the device's header with the object's own data key, the original trailer kept.
    """
    aead = AESGCM(bytes.fromhex(vector["inputs"]["rng_data_key"]))
    header_hash = bytes.fromhex(vector["expected"]["header_hash"])
    length = len(vector["inputs"]["plaintext"]) // 2
    plaintext = (text * (length // len(text) + 1))[:length]
    size = vector["inputs"]["chunk_size"]
    pieces = [plaintext[i : i + size] for i in range(0, len(plaintext), size)]
    chunks = [aead.encrypt(chunk_nonce(i, i == len(pieces) - 1), p, header_hash) for i, p in enumerate(pieces)]
    return sealed[:header_size] + b"".join(chunks) + sealed[-TRAILER_SIZE:]


def _trailer(signer: Ed25519PrivateKey, sealed: bytes, header_size: int, chunk_size: int) -> bytes:
    """A well-formed trailer for ``sealed``'s chunks, signed by ``signer``."""
    body = sealed[header_size:-TRAILER_SIZE]
    count = max(1, -(-len(body) // (chunk_size + TAG_SIZE)))
    layout = Layout(header_size, chunk_size, count, len(body) - count * TAG_SIZE)
    header_hash = hashlib.sha256(sealed[:header_size]).digest()
    digest = hashlib.sha256(body).digest()
    return signer.sign(content_message(header_hash, layout.chunk_count, layout.plaintext_size, digest))


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text("utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).as_posix()} to regenerate it", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, "utf-8")
    print(f"wrote {len(json.loads(text)['vectors'])} vectors to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
