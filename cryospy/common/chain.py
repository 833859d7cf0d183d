"""Evidence-chain verification over the headers of sealed clips.

Each device signs every clip header with its sequence number, capture time and the hash of its previous header. Given
the headers found in a bucket or an exported folder, :func:`verify_chain` reports every way the set departs from one
unbroken, validly signed chain per device: missing clips (with the span of time they would have covered), clips stored
out of order, replays and forks, broken links, and headers signed by the wrong key. It needs no decryption keys, only
the devices' public verify keys, so an export can be checked offline by anyone.

The function reports; it never raises for bad evidence. Headers that fail their signature check are excluded from the
chain analysis (their fields are unauthenticated), so a forged clip also shows up as a gap at its sequence.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.sealed import ZERO_HASH, SealedFormatError, SealedHeader, verify_header_signature
from cryospy.common.timefmt import utc_stamp

KINDS = ("bad-signature", "gap", "reordered", "replayed", "broken-link", "wrong-device", "unreadable")


@dataclass(frozen=True)
class ChainProblem:
    """One finding. ``kind`` is one of :data:`KINDS`; ``where`` is the file or storage key to look at; ``detail`` is for
    humans and, for gaps, names the missing sequence numbers and the time span.
    """

    kind: str
    where: str
    detail: str
    device_id: str = ""
    sequence: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.detail}"


@dataclass(frozen=True)
class _Entry:
    where: str
    header: SealedHeader


def verify_chain(
    headers: Iterable[tuple[str, SealedHeader]], device_keys: Mapping[str, Ed25519PublicKey]
) -> list[ChainProblem]:
    """Check signatures and per-device chains; ``[]`` means every clip is accounted for and in order.

    ``headers`` pairs each header with where it was found, in storage/listing order (object keys and export file names
    sort by capture time): a clip whose signed sequence disagrees with that order is reported as reordered.
    ``device_keys`` maps device ids to their registered Ed25519 verify keys.
    """
    problems: list[ChainProblem] = []
    verified: dict[str, list[_Entry]] = {}
    unverified: dict[tuple[str, int], list[str]] = {}
    for where, header in headers:
        problem = _check_signature(where, header, device_keys)
        if problem is None:
            verified.setdefault(header.device_id, []).append(_Entry(where, header))
        else:
            problems.append(problem)
            unverified.setdefault((header.device_id, header.sequence), []).append(where)
    for device_id, entries in verified.items():
        problems += _check_device(device_id, entries, unverified)
    return problems


def _check_signature(
    where: str, header: SealedHeader, device_keys: Mapping[str, Ed25519PublicKey]
) -> ChainProblem | None:
    def signed_by(key: Ed25519PublicKey) -> bool:
        try:
            verify_header_signature(header, key)
        except SealedFormatError:
            return False
        return True

    device, seq = header.device_id, header.sequence
    key = device_keys.get(device)
    if key is not None and signed_by(key):
        return None
    impostor = next((other for other, k in device_keys.items() if other != device and signed_by(k)), None)
    if impostor is not None:
        return ChainProblem(
            "wrong-device",
            where,
            f"claims to be clip {seq} of device {device!r} but is signed by the key of device {impostor!r}: "
            "it was re-signed or planted",
            device,
            seq,
        )
    if key is None:
        return ChainProblem(
            "wrong-device",
            where,
            f"device {device!r} has no registered verify key, so clip {seq} cannot be checked; register the "
            "device's key or check where this file came from",
            device,
            seq,
        )
    return ChainProblem(
        "bad-signature",
        where,
        f"clip {seq} of device {device!r} does not verify with the device's key: its header was edited, or "
        "it was signed by an unknown key",
        device,
        seq,
    )


def _check_device(
    device: str, entries: list[_Entry], unverified: Mapping[tuple[str, int], list[str]]
) -> list[ChainProblem]:
    problems = _listing_order(device, entries)
    by_sequence: dict[int, list[_Entry]] = {}
    for entry in entries:
        by_sequence.setdefault(entry.header.sequence, []).append(entry)
    previous: _Entry | None = None
    for seq in sorted(by_sequence):
        group = by_sequence[seq]
        problems += _duplicates(device, group)
        current = next((e for e in group if previous and e.header.prev_hash == previous.header.header_hash), group[0])
        if previous is None:
            if seq == 0 and current.header.prev_hash != ZERO_HASH:
                problems.append(
                    ChainProblem(
                        "broken-link",
                        current.where,
                        f"clip 0 of device {device!r} points to a previous clip, but sequence 0 starts a chain",
                        device,
                        seq,
                    )
                )
        else:
            problems += _link(device, previous, current, unverified)
        previous = current
    return problems


def _listing_order(device: str, all_entries: list[_Entry]) -> list[ChainProblem]:
    """Flag the fewest clips whose removal leaves the listing sorted by sequence (a longest non-decreasing run).

    Clips whose sequence number occurs more than once are left to the replay check, so a copy is reported once.
    """
    counts: dict[int, int] = {}
    for entry in all_entries:
        counts[entry.header.sequence] = counts.get(entry.header.sequence, 0) + 1
    entries = [e for e in all_entries if counts[e.header.sequence] == 1]
    sequences = [e.header.sequence for e in entries]
    tails: list[int] = []  # tails[k] = smallest tail value of a non-decreasing run of length k + 1
    tail_index: list[int] = []
    parent = [-1] * len(sequences)
    for i, seq in enumerate(sequences):
        k = bisect.bisect_right(tails, seq)
        parent[i] = tail_index[k - 1] if k else -1
        if k == len(tails):
            tails.append(seq)
            tail_index.append(i)
        else:
            tails[k], tail_index[k] = seq, i
    keep: set[int] = set()
    i = tail_index[-1] if tail_index else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    problems = []
    for i, entry in enumerate(entries):
        if i not in keep:
            around = ", ".join(
                f"{side} clip {sequences[j]}"
                for side, j in (("after", i - 1), ("before", i + 1))
                if 0 <= j < len(sequences)
            )
            problems.append(
                ChainProblem(
                    "reordered",
                    entry.where,
                    f"clip {sequences[i]} of device {device!r} is listed out of place ({around}): its "
                    "storage position does not match its signed sequence, so it was renamed or moved",
                    device,
                    sequences[i],
                )
            )
    return problems


def _duplicates(device: str, group: list[_Entry]) -> list[ChainProblem]:
    first, problems = group[0], []
    for other in group[1:]:
        seq = other.header.sequence
        if other.header.header_hash == first.header.header_hash:
            detail = (
                f"clip {seq} of device {device!r} is stored again (first at {first.where}): a replayed or "
                "duplicated upload"
            )
        else:
            detail = (
                f"two different validly signed clips claim sequence {seq} of device {device!r} (the other "
                f"is {first.where}): the device's chain forked — its key may be in use on another machine"
            )
        problems.append(ChainProblem("replayed", other.where, detail, device, seq))
    return problems


def _link(
    device: str, previous: _Entry, current: _Entry, unverified: Mapping[tuple[str, int], list[str]]
) -> list[ChainProblem]:
    prev_h, cur_h = previous.header, current.header
    problems = []
    if cur_h.sequence > prev_h.sequence + 1:
        first, last = prev_h.sequence + 1, cur_h.sequence - 1
        missing = f"clip {first}" if first == last else f"clips {first}–{last} ({last - first + 1} clips)"
        claimed = [w for s in range(first, last + 1) for w in unverified.get((device, s), [])]
        note = f"; present but failing verification: {', '.join(claimed)}" if claimed else ""
        problems.append(
            ChainProblem(
                "gap",
                current.where,
                f"device {device!r} is missing {missing}: footage from {_stamp(prev_h.captured_at)} (start "
                f"of clip {prev_h.sequence}) to {_stamp(cur_h.captured_at)} (start of clip "
                f"{cur_h.sequence}), {_duration(prev_h.captured_at, cur_h.captured_at)}, is unaccounted "
                f"for{note}",
                device,
                first,
            )
        )
    elif cur_h.prev_hash != prev_h.header_hash:
        problems.append(
            ChainProblem(
                "broken-link",
                current.where,
                f"clip {cur_h.sequence} of device {device!r} does not chain to clip {prev_h.sequence} "
                f"({previous.where}): one of them was replaced by another signed clip",
                device,
                cur_h.sequence,
            )
        )
    if cur_h.captured_at < prev_h.captured_at:
        problems.append(
            ChainProblem(
                "reordered",
                current.where,
                f"clip {cur_h.sequence} of device {device!r} was captured at {_stamp(cur_h.captured_at)}, "
                f"before clip {prev_h.sequence} ({_stamp(prev_h.captured_at)}): capture times run backwards "
                "(device clock reset, or clips out of order)",
                device,
                cur_h.sequence,
            )
        )
    return problems


def _stamp(moment: datetime) -> str:
    return utc_stamp(moment)


def _duration(start: datetime, end: datetime) -> str:
    seconds = int((end - start).total_seconds())
    if seconds < 0:
        return "a negative span (capture times run backwards)"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])
