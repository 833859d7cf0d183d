"""`cryospy runtime add`: a second runtime's own data directory, and MinIO's webhook target per runtime. The
runtimes themselves share a burst under SIGKILL in tests/integration/test_two_runtimes.py."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cryospy.cli.main import main as cli_main
from cryospy.functions.app import OBJECT_HANDLERS, app
from cryospy.infra.deployment import load
from cryospy.infra.event_routes import notification_configuration, routes_from_app
from cryospy.infra.minio_server import WEBHOOK_ARN, webhook_arns, webhook_env
from tests.conftest import new_deployment


def test_one_runtime_keeps_its_one_webhook_target(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path / "a")
    env = webhook_env(dep, "/q")
    assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_CRYOSPY"] == dep.webhook_url and len(env) == 5
    assert webhook_arns(dep) == [WEBHOOK_ARN]


def test_a_second_runtime_needs_the_shared_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dep = new_deployment(tmp_path / "a")
    assert cli_main(["runtime", "add", "--data-dir", str(dep.data_dir), "--runtime-dir", str(tmp_path / "b"),
                     "--port", "18555"]) != 0
    assert "database_url" in capsys.readouterr().err
    assert not (tmp_path / "b" / "deployment.json").exists()


def test_a_second_runtime_gets_its_own_folder_and_a_webhook_target(tmp_path: Path) -> None:
    dep = new_deployment(tmp_path / "a")
    dep.path("server.json").write_text(json.dumps({"database_url": "postgresql://u:p@db.lan/cryospy"}))
    assert cli_main(["runtime", "add", "--data-dir", str(dep.data_dir), "--runtime-dir", str(tmp_path / "b"),
                     "--port", "18555"]) == 0
    main, second = load(dep.data_dir), load(tmp_path / "b")
    assert second.runtime_port == 18555 and second.minio_external and second.minio_url == dep.minio_url
    assert main.runtime_urls == second.runtime_urls == (dep.runtime_url, "http://127.0.0.1:18555")
    for name in ("keys.json", "server.json", "deployment.json"):
        assert stat.S_IMODE((tmp_path / "b" / name).stat().st_mode) == 0o600
    assert (tmp_path / "b" / "keys.json").read_bytes() == dep.keys_path.read_bytes()

    env = webhook_env(main, "/q")
    assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_CRYOSPY"] == dep.webhook_url
    assert env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_CRYOSPY2"] == "http://127.0.0.1:18555/_minio/events"
    assert env["MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_CRYOSPY2"] == dep.webhook_token
    queues = notification_configuration(routes_from_app(app, OBJECT_HANDLERS), dep.bucket,
                                        webhook_arns(main))["QueueConfigurations"]
    assert {q["QueueArn"] for q in queues} == set(webhook_arns(main)) and len(webhook_arns(main)) == 2
    assert len({q["Id"] for q in queues}) == len(queues)   # every route to each runtime, ids unique

    # The same port twice would be one runtime listed twice.
    assert cli_main(["runtime", "add", "--data-dir", str(dep.data_dir), "--runtime-dir", str(tmp_path / "c"),
                     "--port", "18555"]) != 0
