"""Evidence export end to end: the real runtime and MinIO, the dashboard over HTTP with a logged-in session, the
zip unpacked on disk, its MP4s decoded by ffmpeg, and the `cryospy` command line run as VERIFY.txt says."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import ffmpeg
import pytest
import requests

from cryospy.common.ffmpeg_tool import run_ffmpeg
from cryospy.common.objectkeys import parse_clip_key
from cryospy.common.sealed import verify_content
from cryospy.functions.services import S3Identity
from cryospy.web.export_bundle import utc_text
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, clip_place, sample_clip, wait_for

pytestmark = pytest.mark.integration
CLI = Path(sys.executable).with_name("cryospy")


def _login(base: str) -> requests.Session:
    http = requests.Session()
    page = http.get(base + "/login", timeout=10)
    response = http.post(base + "/login", data={"csrf": _csrf(page.text), "passphrase": PASSPHRASE},
                         allow_redirects=False, timeout=10)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    return http


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _upload_three(runtime, deployment, tmp_path: Path, device_id: str) -> tuple[FakeCamera, list[str]]:  # type: ignore[no-untyped-def]
    camera = FakeCamera(deployment, device_id, tmp_path)
    keys = [camera.upload(sample_clip()) for _ in range(3)]       # captured 10 s apart
    for key in keys:
        ck = clip_place(runtime, key)
        wait_for(lambda ck=ck, key=key: runtime.services.index.get_clip(ck.device_id, ck.day, key), what="indexed")
    return camera, keys


def _token(runtime) -> str:  # type: ignore[no-untyped-def]
    """The id export-cam's clips are signed as, which keys the manifest's devices."""
    return runtime.services.devices.get("export-cam").storage_token


def _start_export(http: requests.Session, base: str, fields: dict[str, str]) -> requests.Response:
    form = http.get(base + "/export", timeout=10)
    assert form.status_code == 200
    return http.post(base + "/export", data={"csrf": _csrf(form.text), **fields}, allow_redirects=False, timeout=10)


def _ready(http: requests.Session, base: str, job: str) -> dict:
    def progress() -> dict | None:
        doc = http.get(f"{base}{job}/progress.json", timeout=10).json()
        assert doc["state"] != "failed", doc
        return doc if doc["state"] == "ready" else None

    return wait_for(progress, timeout=60, what="the export checked")


def _verify(folder: Path) -> subprocess.CompletedProcess[str]:
    """The command VERIFY.txt gives, with its placeholder folder replaced by ours."""
    line = next(ln.strip() for ln in (folder / "VERIFY.txt").read_text().splitlines()
                if ln.strip().startswith("cryospy verify "))
    argv = [str(CLI) if a == "cryospy" else a for a in shlex.split(line.replace("path/to/unzipped-folder",
                                                                                str(folder)))]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_export_a_range_download_it_and_verify_it_offline(runtime, deployment, tmp_path: Path):
    camera, keys = _upload_three(runtime, deployment, tmp_path, "export-cam")
    base = deployment.runtime_url
    t0 = parse_clip_key(keys[0]).captured_at
    fields = {"device": "export-cam", "start": utc_text(t0 + timedelta(seconds=5)),
              "end": utc_text(t0 + timedelta(seconds=25))}            # covers the 2nd and 3rd clips
    http = _login(base)

    # Prefilled from the day page's link; the times stay UTC in the page (export.js shows them as local time).
    form = http.get(base + "/export", params=fields, timeout=10).text
    assert 'value="export-cam" selected' in form and f'value="{fields["start"]}"' in form

    started = _start_export(http, base, fields)
    assert started.status_code == 302
    job = started.headers["Location"]
    assert re.fullmatch(r"/export/[A-Za-z0-9_-]{16,64}", job)
    page = http.get(base + job, timeout=10)
    assert page.status_code == 200 and "<progress" in page.text and "<script>" not in page.text
    progress = _ready(http, base, job)
    assert (progress["done"], progress["total"], progress["percent"]) == (2, 2, 100)

    download = http.get(base + progress["download"], stream=True, timeout=60)
    assert download.status_code == 200 and "Content-Length" not in download.headers     # streamed
    assert download.headers["Cache-Control"] == "no-store"
    stamp = (t0 + timedelta(seconds=5)).strftime("%Y%m%dT%H%M%SZ")
    assert download.headers["Content-Disposition"] == f'attachment; filename="cryospy-export-export-cam-{stamp}.zip"'
    data = b"".join(download.iter_content(64 * 1024))
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)

    manifest = json.loads((folder / "manifest.json").read_text())
    assert [c["object_key"] for c in manifest["clips"]] == keys[1:]
    assert manifest["deployment"]["public_key"] == runtime.services.vault.public_key().to_text()
    assert manifest["devices"][_token(runtime)]["verify_key"] == runtime.services.devices.get("export-cam").signing_key
    signer = camera.signer.public_key()
    for clip in manifest["clips"]:
        sealed = folder / clip["sealed"]
        with open(sealed, "rb") as fh:                                # byte for byte the device's object
            assert verify_content(fh, signer_public_key=signer).object_key == clip["object_key"]
        video = folder / clip["video"]
        assert video.read_bytes() == sample_clip()
        frames = run_ffmpeg(ffmpeg.input(str(video))["v:0"].output("-", f="framemd5").global_args("-v", "error"),
                            what=f"decoding {video.name}")
        assert len([ln for ln in frames.decode().splitlines() if ln and not ln.startswith("#")]) >= 10
    assert "fingerprint " + manifest["devices"][_token(runtime)]["fingerprint"] in (folder / "VERIFY.txt").read_text()

    result = _verify(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED: 2 clip(s) from 1 device(s)" in result.stdout
    # The audit log rides along (issue 17): the export itself is in it, the chain and each readable entry check.
    assert "AUDIT intact" in result.stdout
    disclosed = json.loads((folder / "audit" / "entries.json").read_text())["entries"]
    kinds = [d["entry"]["kind"] for d in disclosed]
    assert kinds[-2:] == ["export.start", "export.download"] or kinds[-1] == "export.download"
    assert disclosed[-1]["entry"]["detail"]["device"] == "export-cam"
    entries_file = folder / "audit" / "entries.json"
    kept = entries_file.read_text()
    edited_entries = json.loads(kept)
    edited_entries["entries"][-1]["entry"]["account"] = "someone-else"
    entries_file.write_text(json.dumps(edited_entries))
    result = _verify(folder)
    assert result.returncode == 6 and "the readable copy was edited" in result.stdout
    entries_file.write_text(kept)
    log_file = folder / "audit" / "audit.log"
    kept = log_file.read_text()
    log_file.write_text("".join(kept.splitlines(keepends=True)[1:]))      # the first entry removed
    result = _verify(folder)
    assert result.returncode == 6 and "PROBLEM audit: TAMPERED: entry 0" in result.stdout
    log_file.write_text(kept)

    sealed = folder / manifest["clips"][0]["sealed"]
    original = sealed.read_bytes()
    sealed.write_bytes(original[:500] + bytes([original[500] ^ 1]) + original[501:])
    result = _verify(folder)
    assert result.returncode == 6 and manifest["clips"][0]["sealed"] in result.stdout
    sealed.write_bytes(original)

    video = folder / manifest["clips"][1]["video"]
    video.unlink()
    result = _verify(folder)
    assert result.returncode == 6 and f"PROBLEM missing: {manifest['clips'][1]['video']}" in result.stdout
    video.write_bytes(sample_clip())
    assert _verify(folder).returncode == 0

    edited = json.loads((folder / "manifest.json").read_text())
    edited["clips"][0]["video_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(edited))
    result = _verify(folder)
    assert result.returncode == 6 and "PROBLEM hash-mismatch" in result.stdout

    # Only the session that started a job sees it; logged out, nothing under /export answers.
    other = _login(base)
    for suffix in ("", "/progress.json", "/download"):
        assert other.get(base + job + suffix, timeout=10).status_code == 404, suffix
    anonymous = requests.Session()
    for method, path in (("GET", "/export"), ("POST", "/export"), ("GET", job), ("GET", job + "/progress.json"),
                         ("GET", job + "/download")):
        response = anonymous.request(method, base + path, data=fields, allow_redirects=False, timeout=10)
        assert response.status_code == 302 and response.headers["Location"] == "/login", (method, path)


def test_bad_requests_are_refused_next_to_their_field(runtime, deployment, tmp_path: Path):
    _, keys = _upload_three(runtime, deployment, tmp_path, "export-form")
    base = deployment.runtime_url
    t0 = parse_clip_key(keys[0]).captured_at
    http = _login(base)
    no_csrf = http.post(base + "/export", data={"device": "export-form", "start": utc_text(t0),
                                                "end": utc_text(t0 + timedelta(minutes=1))},
                        allow_redirects=False, timeout=10)
    assert no_csrf.status_code == 403
    cases = [
        ({"device": "nobody", "start": utc_text(t0), "end": utc_text(t0 + timedelta(minutes=1))}, "device"),
        ({"device": "export-form", "start": "", "end": utc_text(t0)}, "start"),
        ({"device": "export-form", "start": utc_text(t0), "end": utc_text(t0)}, "end"),
        ({"device": "export-form", "start": utc_text(t0), "end": utc_text(t0 + timedelta(days=7, seconds=1))}, "end"),
        ({"device": "export-form", "start": utc_text(t0 + timedelta(hours=1)),
          "end": utc_text(t0 + timedelta(hours=2))}, "start"),                  # no clips in it
    ]
    for fields, field in cases:
        response = _start_export(http, base, fields)
        assert response.status_code == 400, fields
        assert f'id="error-{field}"' in response.text and 'aria-invalid="true"' in response.text, fields
        assert f'value="{fields["start"]}"' in response.text                  # what was typed is kept


def test_a_clip_changed_after_the_check_aborts_the_download(runtime, deployment, tmp_path: Path):
    _, keys = _upload_three(runtime, deployment, tmp_path, "export-swap")
    base = deployment.runtime_url
    t0 = parse_clip_key(keys[0]).captured_at
    http = _login(base)
    job = _start_export(http, base, {"device": "export-swap", "start": utc_text(t0),
                                     "end": utc_text(t0 + timedelta(minutes=1))}).headers["Location"]
    progress = _ready(http, base, job)
    # Whoever holds the bucket swaps the last clip's bytes for the first's (validly signed, wrong content).
    root = S3Identity(deployment.minio_url, deployment.minio_root_user, deployment.minio_root_password).client()
    first = root.get_object(Bucket=deployment.bucket, Key=keys[0])["Body"].read()
    root.put_object(Bucket=deployment.bucket, Key=keys[2], Body=first)
    download = http.get(base + progress["download"], stream=True, timeout=60)
    assert download.status_code == 200
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for piece in download.iter_content(64 * 1024):
            received += piece
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))
    after = http.get(f"{base}{job}/progress.json", timeout=10).json()      # the job page says why
    assert after["state"] == "failed" and keys[2] in after["error"] and "changed" in after["error"]
