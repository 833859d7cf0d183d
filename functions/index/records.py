"""The index's record types: what one clip, one fragment and one device's usage look like to every reader.

Why typed records: a clip record used to be a ``dict[str, Any]`` read by string key in a dozen modules, so a
misspelt field was a silent ``None`` and nothing said which fields exist. Every implementation of
:class:`~cryospy.functions.index.protocol.ClipIndex` hands these out and takes them in.

On disk a record is still the JSON document it always was (:meth:`ClipRecord.to_doc` /
:meth:`ClipRecord.from_doc`): the same field names, so index files written before these types existed open
unchanged (``tests/fixtures/index_v1``). Fields an older record lacks take their defaults; a record from
before the fragment log carries its fragments inline and is read as such.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class IndexedFragment(NamedTuple):
    """One ``moof+mdat`` pair of a clip's plaintext: where it is and which seconds of the clip it holds.
    A tuple, because the fragment log stores it as a JSON list ``[offset, size, start_s, duration_s]``."""
    offset: int
    size: int
    start_s: float
    duration_s: float


def fragments_from(rows: Iterable[Iterable[Any]]) -> tuple[IndexedFragment, ...]:
    return tuple(IndexedFragment(int(o), int(n), float(s), float(d)) for o, n, s, d in rows)


def fragments_doc(fragments: Iterable[IndexedFragment]) -> list[list[float]]:
    """As the fragment log stores them (lists, so they compare equal to what it reads back)."""
    return [list(f) for f in fragments]


@dataclass(frozen=True)
class SourceGap:
    """A camera outage the agent reported with the first clip after it (UTC stamps, a short reason)."""
    start: str
    end: str
    reason: str = ""

    def to_doc(self) -> dict[str, str]:
        return {"from": self.start, "to": self.end, "reason": self.reason}


@dataclass(frozen=True)
class ClipRecord:
    """One indexed clip. ``fragments`` is ``None`` unless the reader asked for them (only playback does);
    ``fragment_count`` is always set."""
    key: str
    device_id: str
    day: str
    captured_at: str
    sequence: int = 0
    sealed_size: int = 0
    plain_size: int = 0
    header_hash: str = ""
    prev_hash: str = ""
    thumb_key: str | None = None
    thumb_size: int = 0
    protected: bool = False
    indexed_at: str = ""
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    codec: str = ""
    init_size: int = 0
    fragment_count: int = 0
    fragments: tuple[IndexedFragment, ...] | None = None
    motion: bool = False
    motion_score: float = 0.0
    motion_intervals: tuple[tuple[float | None, float | None], ...] = ()
    peak_s: float | None = None
    agent: Mapping[str, Any] = field(default_factory=dict)
    motion_error: bool = False
    audio_codec: str | None = None
    record_mode: str | None = None
    source_gap: SourceGap | None = None
    chain: str | None = None               # chain_check's verdict: ok, awaiting-predecessor, gap, broken-link
    live: tuple[int, int] | None = None    # segments and clips of the device's live stream before this one
    missing: bool = False                  # a tombstone: deleted from the bucket by something other than CryoSpy
    missing_since: str | None = None
    deleting: bool = False                 # CryoSpy is deleting it (its removal event is expected)

    def __post_init__(self) -> None:
        if self.fragments is not None:   # loaded fragments are the count's truth
            object.__setattr__(self, "fragment_count", len(self.fragments))

    @property
    def stored_bytes(self) -> int:
        """What the clip costs in the bucket: the sealed clip plus its sealed thumbnail."""
        return self.sealed_size + self.thumb_size

    @property
    def playable(self) -> bool:
        """Whether the clip has fragments to play."""
        return bool(self.fragment_count) and not self.missing

    @property
    def order(self) -> tuple[str, str]:
        """Capture order, the key breaking ties: how every reader sorts clips."""
        return self.captured_at, self.key

    def changed(self, **changes: Any) -> ClipRecord:
        """A copy with these fields changed (an unknown field name is a TypeError)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ClipRecord:
        inline = doc.get("fragments")
        fragments = fragments_from(inline) if inline is not None else None
        gap = doc.get("source_gap")
        live = doc.get("live")
        return cls(
            key=str(doc["key"]), device_id=str(doc["device_id"]), day=str(doc["day"]),
            captured_at=str(doc["captured_at"]), sequence=int(doc.get("sequence") or 0),
            sealed_size=int(doc.get("sealed_size") or 0), plain_size=int(doc.get("plain_size") or 0),
            header_hash=doc.get("header_hash") or "", prev_hash=doc.get("prev_hash") or "",
            thumb_key=doc.get("thumb_key") or None, thumb_size=int(doc.get("thumb_size") or 0),
            protected=bool(doc.get("protected")), indexed_at=doc.get("indexed_at") or "",
            duration_s=float(doc.get("duration_s") or 0), width=int(doc.get("width") or 0),
            height=int(doc.get("height") or 0), fps=float(doc.get("fps") or 0), codec=doc.get("codec") or "",
            init_size=int(doc.get("init_size") or 0),
            fragment_count=int(doc.get("fragment_count") or (len(fragments) if fragments else 0)),
            fragments=fragments, motion=bool(doc.get("motion")),
            motion_score=float(doc.get("motion_score") or 0),
            motion_intervals=tuple((iv[0], iv[1]) for iv in doc.get("motion_intervals") or ()
                                   if isinstance(iv, list | tuple) and len(iv) == 2),
            peak_s=doc.get("peak_s"), agent=dict(doc.get("agent") or {}),
            motion_error=bool(doc.get("motion_error")), audio_codec=doc.get("audio_codec") or None,
            record_mode=doc.get("record_mode") or None,
            source_gap=SourceGap(gap["from"], gap["to"], gap.get("reason", "")) if isinstance(gap, dict) else None,
            chain=doc.get("chain"), live=(int(live[0]), int(live[1])) if live else None,
            missing=bool(doc.get("missing")), missing_since=doc.get("missing_since"),
            deleting=bool(doc.get("deleting")),
        )

    def to_doc(self, with_fragments: bool = True) -> dict[str, Any]:
        """The JSON document (the on-disk and API form); fragments only when loaded and asked for."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "fragments":
                if value is not None and with_fragments:
                    doc["fragments"] = fragments_doc(value)
            elif f.name == "source_gap":
                doc[f.name] = value.to_doc() if value is not None else None
            elif f.name == "live":
                doc[f.name] = list(value) if value is not None else None
            elif f.name == "motion_intervals":
                doc[f.name] = [list(iv) for iv in value]
            elif f.name == "agent":
                doc[f.name] = dict(value)
            else:
                doc[f.name] = value
        return doc


@dataclass(frozen=True)
class DeviceUsage:
    """A device's (or, summed, the deployment's) stored bytes and clips, kept as running totals by the index,
    and what its quarantine holds (counted against its quota, not included in ``bytes``)."""
    bytes: int = 0
    clips: int = 0
    quarantine_bytes: int = 0

    def __add__(self, other: DeviceUsage) -> DeviceUsage:
        return DeviceUsage(self.bytes + other.bytes, self.clips + other.clips,
                           self.quarantine_bytes + other.quarantine_bytes)
