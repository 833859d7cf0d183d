"""`cryospy verify` on folders of sealed clips: a clean chain passes; each kind of tampering is named."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryospy.cli.main import main
from cryospy.common.keys import KeyStore, generate_device_signing_key, verify_key_to_text
from cryospy.common.objectkeys import legacy_clip_key as clip_key
from cryospy.common.sealed import ZERO_HASH, seal

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, object]:
    """Six clips from 'porch' laid out like an export, plus manifest.json with the device's verify key."""
    recipient = KeyStore.create(tmp_path / "keys.json", "pass phrase", scrypt_n=2**10,
                                insecure_for_tests=True).current_public_key()
    signer = generate_device_signing_key()
    folder = tmp_path / "export"
    prev = ZERO_HASH
    for seq in range(6):
        ck = clip_key("porch", T0 + timedelta(seconds=60 * seq), seq)
        out = io.BytesIO()
        header = seal(io.BytesIO(b"frame" * 100 + bytes([seq])), out, object_key=ck.key, device_id="porch",
                      sequence=seq, captured_at=ck.captured_at, content_type="video/mp4", prev_hash=prev,
                      recipient=recipient, signer=signer, chunk_size=256)
        prev = header.header_hash
        path = folder / ck.key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.getvalue())
    (folder / "manifest.json").write_text(json.dumps({"devices": {"porch": verify_key_to_text(signer.public_key())}}))
    return folder, recipient


def _clips(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.cse"))


def test_clean_export_verifies(export, capsys):
    folder, _ = export
    assert main(["verify", str(folder)]) == 0
    assert "VERIFIED: 6 clip(s) from 1 device(s)" in capsys.readouterr().out


def test_removed_clip_is_a_gap_with_its_time_span(export, capsys):
    folder, _ = export
    _clips(folder)[2].unlink()
    assert main(["verify", str(folder)]) == 6
    out = capsys.readouterr().out
    assert "PROBLEM gap" in out and "2" in out and "12:01" in out and "12:03" in out
    assert "NOT VERIFIED" in out


def test_reordered_clip_is_named(export, capsys):
    folder, _ = export
    a, b = _clips(folder)[1], _clips(folder)[3]
    tmp = a.with_suffix(".tmp")
    shutil.move(a, tmp)
    shutil.move(b, a)
    shutil.move(tmp, b)
    assert main(["verify", str(folder)]) == 6
    assert "PROBLEM reordered" in capsys.readouterr().out


def test_clip_resigned_by_another_device_is_named(export, capsys):
    folder, recipient = export
    victim = _clips(folder)[4]
    other = generate_device_signing_key()
    ck = clip_key("porch", T0 + timedelta(seconds=240), 4)
    out = io.BytesIO()
    seal(io.BytesIO(b"forged"), out, object_key=ck.key, device_id="porch", sequence=4, captured_at=ck.captured_at,
         content_type="video/mp4", prev_hash=ZERO_HASH, recipient=recipient, signer=other, chunk_size=256)
    victim.write_bytes(out.getvalue())
    assert main(["verify", str(folder)]) == 6
    assert "PROBLEM bad-signature" in capsys.readouterr().out


def test_edited_bytes_are_named_and_missing_keys_explained(export, capsys):
    folder, _ = export
    clip = _clips(folder)[0]
    data = bytearray(clip.read_bytes())
    data[-40] ^= 0x01
    clip.write_bytes(bytes(data))
    assert main(["verify", str(folder)]) == 6
    assert "PROBLEM" in capsys.readouterr().out
    assert main(["verify", str(clip)]) == 2          # a lone file has no manifest next to it
    assert "--devices" in capsys.readouterr().err


def test_keys_from_a_file_of_your_own_override_the_manifest(export, tmp_path, capsys):
    """A server that swapped the device key in the manifest is caught when the verifier brings the real key."""
    folder, _ = export
    real = json.loads((folder / "manifest.json").read_text())["devices"]["porch"]
    impostor = verify_key_to_text(generate_device_signing_key().public_key())
    (folder / "manifest.json").write_text(json.dumps({"devices": {"porch": {"verify_key": impostor}}}))
    assert main(["verify", str(folder)]) == 6
    assert "PROBLEM bad-signature" in capsys.readouterr().out
    own = tmp_path / "devices.json"
    own.write_text(json.dumps({"devices": {"porch": real}}))
    assert main(["verify", str(folder), "--devices", str(own)]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED: 6 clip(s)" in out and "(from devices.json)" in out
