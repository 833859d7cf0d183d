"""Evidence-chain verification: each kind of tampering is named, a clean chain yields no findings."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cryospy.common.chain import KINDS, ChainProblem, verify_chain
from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.sealed import ZERO_HASH, SealedHeader, read_header, seal_bytes

RECIPIENT = DeploymentPublicKey.from_public(X25519PrivateKey.generate().public_key())
CAM1, CAM2 = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
KEYS = {"cam-1": CAM1.public_key(), "cam-2": CAM2.public_key()}
START = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def _clip(device: str, seq: int, prev: bytes, signer: Ed25519PrivateKey, at: datetime | None = None) -> SealedHeader:
    return seal_bytes(
        b"",
        object_key=f"clips/{device}/{seq:04d}.mp4",
        device_id=device,
        sequence=seq,
        captured_at=at or START + timedelta(minutes=seq),
        content_type="video/mp4",
        prev_hash=prev,
        recipient=RECIPIENT,
        signer=signer,
    )[1]


def _chain(device: str, signer: Ed25519PrivateKey, count: int, first: int = 0) -> list[tuple[str, SealedHeader]]:
    out, prev = [], ZERO_HASH
    for seq in range(first, first + count):
        header = _clip(device, seq, prev, signer)
        out.append((header.object_key, header))
        prev = header.header_hash
    return out


def _kinds(problems: list[ChainProblem]) -> list[str]:
    return [p.kind for p in problems]


def test_a_clean_chain_has_no_problems() -> None:
    listing = _chain("cam-1", CAM1, 6) + _chain("cam-2", CAM2, 3)
    assert verify_chain(listing, KEYS) == []


def test_retention_deleting_the_oldest_clips_is_not_a_gap() -> None:
    assert verify_chain(_chain("cam-1", CAM1, 8)[3:], KEYS) == []


def test_a_removed_clip_is_a_gap_with_its_time_span() -> None:
    listing = _chain("cam-1", CAM1, 6)
    del listing[2]
    [problem] = verify_chain(listing, KEYS)
    assert problem.kind == "gap" and problem.where == "clips/cam-1/0003.mp4"
    assert problem.sequence == 2 and problem.device_id == "cam-1"
    assert "missing clip 2" in problem.detail
    assert "2025-03-04T10:01:00.000Z" in problem.detail and "2025-03-04T10:03:00.000Z" in problem.detail
    assert "2 min" in problem.detail


def test_several_missing_clips_are_one_gap() -> None:
    listing = _chain("cam-1", CAM1, 10)
    del listing[3:7]
    [problem] = verify_chain(listing, KEYS)
    assert problem.kind == "gap" and "clips 3–6 (4 clips)" in problem.detail and "5 min" in problem.detail


def test_a_reordered_clip_is_named() -> None:
    listing = _chain("cam-1", CAM1, 6)
    listing[3], listing[4] = listing[4], listing[3]
    [problem] = verify_chain(listing, KEYS)
    assert problem.kind == "reordered" and problem.where in {"clips/cam-1/0003.mp4", "clips/cam-1/0004.mp4"}


def test_a_clip_resigned_by_another_device_is_named() -> None:
    listing = _chain("cam-1", CAM1, 5)
    original = listing[2][1]
    forged = _clip("cam-1", 2, original.prev_hash, CAM2, original.captured_at)
    listing[2] = ("clips/cam-1/0002.mp4", forged)
    problems = verify_chain(listing, KEYS)
    assert _kinds(problems) == ["wrong-device", "gap"]
    assert "device 'cam-2'" in problems[0].detail and problems[0].where == "clips/cam-1/0002.mp4"
    assert "failing verification: clips/cam-1/0002.mp4" in problems[1].detail


def test_removed_reordered_and_resigned_together() -> None:
    listing = _chain("cam-1", CAM1, 12)
    forged_from = listing[9][1]
    listing[9] = (listing[9][0], _clip("cam-1", 9, forged_from.prev_hash, CAM2, forged_from.captured_at))
    listing[5], listing[6] = listing[6], listing[5]
    del listing[2]
    problems = verify_chain(listing, KEYS)
    assert sorted(_kinds(problems)) == ["gap", "gap", "reordered", "wrong-device"]
    gaps = [p for p in problems if p.kind == "gap"]
    assert {p.sequence for p in gaps} == {2, 9}


def test_a_replayed_clip_and_a_fork() -> None:
    listing = _chain("cam-1", CAM1, 4)
    listing.append(("copies/cam-1/0001.mp4", listing[1][1]))
    fork = _clip("cam-1", 2, listing[1][1].header_hash, CAM1, START + timedelta(minutes=2, seconds=1))
    listing.append(("clips/cam-1/0002-b.mp4", fork))
    replays = verify_chain(listing, KEYS)
    assert _kinds(replays) == ["replayed", "replayed"]
    assert [p.where for p in replays] == ["copies/cam-1/0001.mp4", "clips/cam-1/0002-b.mp4"]
    assert "stored again" in replays[0].detail and "forked" in replays[1].detail


def test_a_broken_link_and_backwards_time() -> None:
    listing = _chain("cam-1", CAM1, 3)
    stray = _clip("cam-1", 3, b"\x01" * 32, CAM1, START - timedelta(hours=1))
    listing.append((stray.object_key, stray))
    problems = verify_chain(listing, KEYS)
    assert _kinds(problems) == ["broken-link", "reordered"]
    assert "does not chain to clip 2" in problems[0].detail and "capture times run backwards" in problems[1].detail


def test_a_bad_signature_and_an_unknown_device() -> None:
    listing = _chain("cam-1", CAM1, 3)
    stranger = _clip("cam-1", 3, listing[-1][1].header_hash, Ed25519PrivateKey.generate())
    ghost = _clip("cam-9", 0, ZERO_HASH, Ed25519PrivateKey.generate())
    problems = verify_chain([*listing, ("x/stranger", stranger), ("x/ghost", ghost)], KEYS)
    assert [(p.kind, p.where) for p in problems] == [("bad-signature", "x/stranger"), ("wrong-device", "x/ghost")]
    assert "no registered verify key" in problems[1].detail


def test_sequence_zero_must_start_a_chain() -> None:
    header = _clip("cam-1", 0, b"\x02" * 32, CAM1)
    assert _kinds(verify_chain([("a", header)], KEYS)) == ["broken-link"]


def test_kinds_are_the_documented_set_and_headers_round_trip() -> None:
    assert set(KINDS) == {"bad-signature", "gap", "reordered", "replayed", "broken-link", "wrong-device", "unreadable"}
    header = _chain("cam-1", CAM1, 1)[0][1]
    assert read_header(io.BytesIO(header.encoded)) == header
    assert str(ChainProblem("gap", "w", "d")) == "gap: w: d"
