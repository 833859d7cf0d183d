"""`cryospy setup --drive/--parity/--external-minio`, `cryospy minio node-env`, and what the status page reads
from MinIO's admin info. The drives and the cluster themselves are exercised against real MinIO in
tests/integration/test_drive_failure.py and test_distributed_minio.py."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cryospy.cli.main import main as cli_main
from cryospy.infra.deployment import load
from cryospy.infra.minio_drives import default_parity, parse_server_info
from cryospy.infra.minio_server import drive_paths, minio_env


def setup_args(data: Path, *extra: str) -> list[str]:
    return ["setup", "--browser", "--no-tls", "--host", "127.0.0.1", "--data-dir", str(data), *extra]


def drives(tmp_path: Path, n: int = 4) -> list[str]:
    return [arg for i in range(1, n + 1) for arg in ("--drive", str(tmp_path / "disks" / f"d{i}"))]


def test_four_drives_on_one_disk_need_the_explicit_opt_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(setup_args(tmp_path / "a", *drives(tmp_path))) == 3
    err = capsys.readouterr().err
    assert "--drives-share-disk" in err and ("on one disk" in err or "system disk" in err)
    assert not (tmp_path / "a" / "deployment.json").exists()

    assert cli_main(setup_args(tmp_path / "b", *drives(tmp_path), "--drives-share-disk", "--parity", "1")) == 0
    dep = load(tmp_path / "b")
    assert dep.minio_drives == tuple(str(tmp_path / "disks" / f"d{i}") for i in range(1, 5))
    assert [str(p) for p in drive_paths(dep)] == list(dep.minio_drives)
    assert all(stat.S_IMODE(Path(d).stat().st_mode) == 0o700 for d in dep.minio_drives)
    env = minio_env(dep)
    assert env["MINIO_STORAGE_CLASS_STANDARD"] == "EC:1" and env["MINIO_ROOTDRIVE_THRESHOLD_SIZE"] == "1"
    assert "erasure-code clips across 4 drives" in capsys.readouterr().out


@pytest.mark.parametrize(("count", "extra", "message"), [
    (0, ["--drive", "relative/d1", "--drive", "relative/d2"], "absolute paths"),
    (4, ["--parity", "3"], "not possible with 4 drive(s)"),
    (0, ["--parity", "2"], "needs several --drive"),
    (17, [], "2 to 16 drives"),
    (1, ["--parity", "1"], "not possible with 1 drive(s)"),
])
def test_impossible_layouts_are_refused_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         count: int, extra: list[str], message: str) -> None:
    assert cli_main(setup_args(tmp_path / "dep", *drives(tmp_path, count), *extra, "--drives-share-disk")) == 3
    assert message in capsys.readouterr().err
    assert not (tmp_path / "dep" / "deployment.json").exists()


def test_one_default_drive_is_unchanged(tmp_path: Path) -> None:
    assert cli_main(setup_args(tmp_path / "dep")) == 0
    dep = load(tmp_path / "dep")
    assert drive_paths(dep) == [dep.path("minio", "data")] and not dep.minio_external
    env = minio_env(dep)
    assert "MINIO_STORAGE_CLASS_STANDARD" not in env and "MINIO_ROOTDRIVE_THRESHOLD_SIZE" not in env


def test_external_minio_takes_root_credentials_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINIO_ROOT_USER", raising=False)
    monkeypatch.delenv("MINIO_ROOT_PASSWORD", raising=False)
    assert cli_main(setup_args(tmp_path / "a", "--external-minio", "http://minio-lb.lan:9000")) == 2
    assert "MINIO_ROOT_USER and MINIO_ROOT_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("MINIO_ROOT_USER", "cluster-root")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "cluster-root-secret")
    assert cli_main(setup_args(tmp_path / "b", "--external-minio", "ftp://minio-lb.lan")) == 2
    assert cli_main(setup_args(tmp_path / "b", "--external-minio", "http://lb:9000", *drives(tmp_path, 2))) == 2
    capsys.readouterr()

    assert cli_main(setup_args(tmp_path / "c", "--external-minio", "http://minio-lb.lan:9000/")) == 0
    dep = load(tmp_path / "c")
    assert dep.minio_external and dep.minio_url == "http://minio-lb.lan:9000"
    assert (dep.minio_root_user, dep.minio_root_password) == ("cluster-root", "cluster-root-secret")
    assert "cryospy minio node-env" in capsys.readouterr().out

    assert cli_main(["minio", "node-env", "--data-dir", str(tmp_path / "c"), "--queue-dir", "/srv/events"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["MINIO_NOTIFY_WEBHOOK_ENDPOINT_CRYOSPY"] == dep.webhook_url
    assert lines["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_CRYOSPY"] == dep.webhook_token
    assert lines["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_CRYOSPY"] == "/srv/events"
    assert cli_main(["minio", "node-env", "--data-dir", str(tmp_path / "c"), "--queue-dir", "events"]) == 2


def test_minio_defaults_for_parity_follow_its_storage_class_table() -> None:
    assert [default_parity(n) for n in (2, 3, 4, 5, 6, 7, 8, 16)] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_server_info_becomes_drive_rows() -> None:
    """The fields MinIO's admin info returned for a 4-drive server while one drive was being healed."""
    doc = json.loads("""{"backend": {"standardSCParity": 2}, "servers": [
      {"endpoint": "127.0.0.1:9480", "state": "online", "drives": [
        {"path": "/d1", "state": "ok", "usedspace": 10, "totalspace": 100},
        {"path": "/d2", "state": "unformatted"},
        {"path": "/d3", "state": "ok", "healing": true, "usedspace": 1, "totalspace": 100, "heal_info": {
           "finished": false, "objects_healed": 13, "bytes_done": 11800, "current_bucket": ".minio.sys/buckets"}},
        {"path": "/d4", "state": "ok", "heal_info": {"finished": true, "objects_healed": 336}}]},
      {"endpoint": "127.0.0.1:9482", "state": "offline", "drives": [{"path": "/d5", "state": "offline"}]}]}""")
    report = parse_server_info(doc)
    assert report.parity == 2 and report.online == 3 and report.nodes_offline == ("127.0.0.1:9482",)
    assert [d.label for d in report.drives] == [
        "online", "empty (new or wiped): healing starts shortly", "healing", "online", "offline"]
    assert report.drives[2].heal is not None and report.drives[2].heal.objects_healed == 13
    assert report.drives[3].heal is not None and report.drives[3].heal.finished
    assert report.attention
