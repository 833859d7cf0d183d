"""Evidence export without services: request validation, clip selection, the check pass, the streamed zip, and
`cryospy verify` on what it unzips to. Clips are sealed in memory; the "bucket" is a dict."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryospy.cli.main import main
from cryospy.common.keys import KeyStore, generate_device_signing_key, verify_key_fingerprint
from cryospy.common.objectkeys import clip_key
from cryospy.common.sealed import ZERO_HASH, seal
from cryospy.common.timefmt import utc_stamp
from cryospy.functions.errors import BadRequest
from cryospy.functions.index.records import ClipRecord
from cryospy.web.export_bundle import (
    ExportChanged,
    ExportFailed,
    ExportRequest,
    build_manifest,
    check_clip,
    parse_request,
    select_clips,
)
from cryospy.web.export_zip import stream_zip

T0 = datetime(2026, 3, 1, 23, 59, 40, tzinfo=UTC)   # the clips straddle midnight: two day shards
TOKEN = "_porchtokenporchtokenporcht"   # the storage token 'porch' signs its clips as


class Bucket:
    """Sealed clips of one device, with the index records ingest would have written."""

    def __init__(self, tmp_path: Path, count: int = 5, motion: tuple[int, ...] = ()):
        store = KeyStore.create(tmp_path / "keys.json", "pass phrase", scrypt_n=2**10, insecure_for_tests=True)
        self.keys = store.unlock("pass phrase")
        self.deployment_key = store.current_public_key()
        self.signer = generate_device_signing_key()
        self.objects: dict[str, bytes] = {}
        self.records: dict[str, list[ClipRecord]] = {}
        prev = ZERO_HASH
        for seq in range(count):
            ck = clip_key(TOKEN, T0 + timedelta(seconds=10 * seq), seq)
            plain = f"clip {seq} ".encode() * 300
            out = io.BytesIO()
            header = seal(io.BytesIO(plain), out, object_key=ck.key, device_id=TOKEN, sequence=seq,
                          captured_at=ck.captured_at, content_type="video/mp4", prev_hash=prev,
                          recipient=self.deployment_key, signer=self.signer, chunk_size=1024)
            prev = header.header_hash
            self.objects[ck.key] = out.getvalue()
            self.records.setdefault(ck.day, []).append(ClipRecord(
                key=ck.key, device_id="porch", day=ck.day, sequence=seq,
                captured_at=utc_stamp(ck.captured_at),
                sealed_size=len(out.getvalue()), plain_size=len(plain), duration_s=10.0,
                motion=seq in motion, chain="first" if seq == 0 else "ok"))

    def clips_for_day(self, device_id: str, day: str) -> list[ClipRecord]:
        return list(self.records.get(day, [])) if device_id == "porch" else []

    def fetch(self, key: str) -> io.BytesIO:
        return io.BytesIO(self.objects[key])


def _export(bucket: Bucket, start: datetime, end: datetime, motion_only: bool = False):  # type: ignore[no-untyped-def]
    selection = select_clips(bucket, ExportRequest("porch", start, end, motion_only))
    checked = [check_clip(bucket.fetch, r, bucket.keys, bucket.signer.public_key()) for r in selection.clips]
    manifest = build_manifest(selection, checked, bucket.signer.public_key(), bucket.deployment_key,
                              {"user": "admin", "address": "127.0.0.1"}, datetime(2026, 3, 5, tzinfo=UTC))
    return manifest, checked


def _unzip(data: bytes, folder: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        archive.extractall(folder)
    return folder


def test_the_form_is_validated_field_by_field():
    ok = {"device": "porch", "start": "2026-03-01T10:00:00.000Z", "end": "2026-03-01T11:00:00+01:00"}
    with pytest.raises(BadRequest) as err:
        parse_request(ok, ["garden"])
    assert err.value.field == "device"
    with pytest.raises(BadRequest) as err:
        parse_request({**ok, "start": "yesterday"}, ["porch"])
    assert err.value.field == "start"
    with pytest.raises(BadRequest) as err:
        parse_request(ok, ["porch"])                     # 11:00+01:00 is 10:00Z: not after the start
    assert err.value.field == "end" and "after" in err.value.message
    with pytest.raises(BadRequest) as err:
        parse_request({**ok, "end": "2026-03-08T10:00:01Z"}, ["porch"])
    assert err.value.field == "end" and "7 days" in err.value.message
    with pytest.raises(BadRequest) as err:
        parse_request({**ok, "end": "2026-03-01T12:00:00"}, ["porch"])   # no zone: never guess one
    assert err.value.field == "end"
    request = parse_request({**ok, "end": "2026-03-08T10:00:00Z", "motion_only": "1"}, ["porch"])
    assert request.end - request.start == timedelta(days=7) and request.motion_only


def test_selection_spans_day_shards_and_refuses_an_empty_range(tmp_path: Path):
    bucket = Bucket(tmp_path, count=5, motion=(1, 3))
    chosen = select_clips(bucket, ExportRequest("porch", T0 + timedelta(seconds=5), T0 + timedelta(seconds=40)))
    assert [r.sequence for r in chosen.clips] == [1, 2, 3]          # 23:59:50, 00:00:00 (next day), 00:00:10
    motion = select_clips(bucket, ExportRequest("porch", T0, T0 + timedelta(minutes=1), motion_only=True))
    assert [r.sequence for r in motion.clips] == [1, 3]
    assert [r.sequence for r in motion.left_out] == [0, 2, 4]
    with pytest.raises(BadRequest) as err:
        select_clips(bucket, ExportRequest("porch", T0 + timedelta(hours=1), T0 + timedelta(hours=2)))
    assert err.value.field == "start"


def test_streamed_zip_verifies_offline_and_names_every_defect(tmp_path: Path, capsys):
    bucket = Bucket(tmp_path, count=5)
    manifest, checked = _export(bucket, T0 + timedelta(seconds=5), T0 + timedelta(seconds=40))
    pieces = list(stream_zip(manifest, checked, bucket.fetch, bucket.keys, bucket.signer.public_key()))
    assert len(pieces) > 3                                            # streamed, not one blob
    folder = _unzip(b"".join(pieces), tmp_path / "export")
    doc = json.loads((folder / "manifest.json").read_text())
    assert [c["sequence"] for c in doc["clips"]] == [1, 2, 3] and doc["gaps"] == []
    assert doc["devices"][TOKEN]["fingerprint"] == verify_key_fingerprint(bucket.signer.public_key())
    assert doc["devices"][TOKEN]["camera"] == "porch" and {c["signed_as"] for c in doc["clips"]} == {TOKEN}
    assert (folder / doc["clips"][0]["video"]).read_bytes() == b"clip 1 " * 300
    assert "cryospy verify" in (folder / "VERIFY.txt").read_text()

    assert main(["verify", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED: 3 clip(s)" in out and verify_key_fingerprint(bucket.signer.public_key()) in out

    video = folder / doc["clips"][1]["video"]
    video.write_bytes(video.read_bytes()[:-1] + b"X")
    assert main(["verify", str(folder)]) == 6
    assert f"PROBLEM hash-mismatch: {doc['clips'][1]['video']}" in capsys.readouterr().out
    video.unlink()
    assert main(["verify", str(folder)]) == 6
    assert f"PROBLEM missing: {doc['clips'][1]['video']}" in capsys.readouterr().out


def test_edited_manifest_and_added_files_fail(tmp_path: Path, capsys):
    bucket = Bucket(tmp_path, count=3)
    manifest, checked = _export(bucket, T0, T0 + timedelta(minutes=1))
    folder = _unzip(b"".join(stream_zip(manifest, checked, bucket.fetch, bucket.keys, bucket.signer.public_key())),
                    tmp_path / "export")
    doc = json.loads((folder / "manifest.json").read_text())
    doc["clips"][2]["sequence"] = 7
    (folder / "manifest.json").write_text(json.dumps(doc))
    assert main(["verify", str(folder)]) == 6
    assert "PROBLEM manifest-mismatch" in capsys.readouterr().out
    del doc["clips"][2]
    (folder / "manifest.json").write_text(json.dumps(doc))
    assert main(["verify", str(folder)]) == 6
    out = capsys.readouterr().out
    assert "PROBLEM unlisted" in out and checked[2].sealed_path in out


def test_motion_only_export_explains_its_gaps_but_a_lost_clip_is_still_a_gap(tmp_path: Path, capsys):
    bucket = Bucket(tmp_path, count=5, motion=(0, 2, 4))
    manifest, checked = _export(bucket, T0, T0 + timedelta(minutes=1), motion_only=True)
    assert [e["sequence"] for e in manifest["left_out"]] == [1, 3] and manifest["gaps"] == []
    folder = _unzip(b"".join(stream_zip(manifest, checked, bucket.fetch, bucket.keys, bucket.signer.public_key())),
                    tmp_path / "export")
    assert main(["verify", str(folder)]) == 0
    assert f"NOTE clip 1 of device '{TOKEN}' left out of this export on purpose" in capsys.readouterr().out
    doc = json.loads((folder / "manifest.json").read_text())
    doc["left_out"] = doc["left_out"][:1]                           # claim less than was left out
    (folder / "manifest.json").write_text(json.dumps(doc))
    assert main(["verify", str(folder)]) == 6
    assert "PROBLEM gap" in capsys.readouterr().out


def test_a_clip_changed_after_the_check_stops_the_download(tmp_path: Path):
    bucket = Bucket(tmp_path, count=3)
    manifest, checked = _export(bucket, T0, T0 + timedelta(minutes=1))
    key = checked[1].record.key
    data = bytearray(bucket.objects[key])
    data[-100] ^= 1
    bucket.objects[key] = bytes(data)
    stream = stream_zip(manifest, checked, bucket.fetch, bucket.keys, bucket.signer.public_key())
    sent = b""
    with pytest.raises(ExportChanged, match=key):
        for piece in stream:
            sent += piece
    with pytest.raises(zipfile.BadZipFile):                         # what was sent is no usable zip
        zipfile.ZipFile(io.BytesIO(sent))
    with pytest.raises(ExportFailed, match="does not verify"):     # and a new export refuses the clip
        check_clip(bucket.fetch, checked[1].record, bucket.keys, bucket.signer.public_key())


def test_a_gap_the_server_saw_before_the_range_is_in_the_manifest(tmp_path: Path):
    bucket = Bucket(tmp_path, count=4)
    for day, records in bucket.records.items():          # the server never received clip 1
        bucket.records[day] = [r.changed(chain="gap") if r.sequence == 2 else r for r in records]
    manifest, _ = _export(bucket, T0 + timedelta(seconds=15), T0 + timedelta(minutes=1))
    assert [c["sequence"] for c in manifest["clips"]] == [2, 3]
    assert [(g["kind"], g["sequence"]) for g in manifest["gaps"]] == [("gap", 2)]
    assert "never reached the server" in manifest["gaps"][0]["detail"]
