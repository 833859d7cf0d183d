"""Running as a service: the systemd units `cryospy service units` writes (checked by systemd's own
`systemd-analyze verify` and `security --offline`), the shipped copies in infra/systemd, readiness over a real
notify socket, and log lines shaped for journald or a terminal, with secrets masked."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cryospy.cli import systemd_units as units
from cryospy.cli.log_setup import JournalFormatter, SecretFilter, configure_logging, writes_to_journal
from cryospy.cli.main import build_parser
from cryospy.cli.sd_notify import Notifier

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def _write(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cryospy", "service", "units", "--out", str(tmp_path / "units"),
                           *extra], capture_output=True, text=True, timeout=60, check=True)


@needs_systemd_analyze
@pytest.mark.parametrize("data_dir", ["/var/lib/cryospy", "/srv/cryo spy"])
def test_written_units_pass_systemd_verify_and_score_well_on_its_security_audit(tmp_path: Path, data_dir: str):
    passphrase = tmp_path / "pass phrase"
    passphrase.write_text("x" * 20)
    proc = _write(tmp_path, "--data-dir", data_dir, "--passphrase-file", str(passphrase),
                  "--minio-bin", "/usr/local/bin/minio")
    assert "systemctl daemon-reload" in proc.stdout
    out = tmp_path / "units"
    services = [out / units.SERVE_UNIT, out / units.AGENT_UNIT]
    check = subprocess.run([SYSTEMD_ANALYZE, "verify", *map(str, services)], capture_output=True, text=True,
                           timeout=60)
    # verify exits 0 for unknown keys and bad values too; it only warns. Nothing may be said.
    assert check.returncode == 0 and check.stderr == "", check.stderr
    for service in services:
        audit = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=20", str(service)],
                               capture_output=True, text=True, timeout=60)
        assert audit.returncode == 0, audit.stdout[-2000:]          # exposure 2.0 or better, of 10
        assert re.search(r"Overall exposure level for \S+: [01]\.\d", audit.stdout)
    serve = (out / units.SERVE_UNIT).read_text()
    assert f"LoadCredential=passphrase:{passphrase}\n" in serve and "--passphrase-file %d/passphrase" in serve
    assert "PrivateDevices=yes" in serve and "KillMode=mixed" in serve and "Type=notify" in serve
    if data_dir.startswith("/var/lib/"):
        assert "StateDirectory=cryospy\n" in serve and "ReadWritePaths" not in serve
    else:
        assert 'ReadWritePaths="/srv/cryo spy"' in serve and 'serve --data-dir "/srv/cryo spy"' in serve
    agent = (out / units.AGENT_UNIT).read_text()
    assert "DeviceAllow=char-video4linux rw" in agent and "SupplementaryGroups=video" in agent
    assert "StateDirectory=cryospy-agent" in agent
    assert (out / units.SYSUSERS_FILE).read_text().splitlines()[-1].startswith("u cryospy - ")


def test_agent_unit_opens_spools_the_config_keeps_elsewhere(tmp_path: Path):
    config = tmp_path / "etc" / "agent.json"
    config.parent.mkdir()
    config.write_text('{"cameras": [{"client_id": "a", "client_secret": "s", "server_url": "http://x", '
                      '"deployment_public_key": "k", "spool_dir": "/mnt/spool-a"}, '
                      '{"client_id": "b", "client_secret": "s", "server_url": "http://x", '
                      '"deployment_public_key": "k"}]}')
    _write(tmp_path, "--agent-config", str(config))
    agent = (tmp_path / "units" / units.AGENT_UNIT).read_text()
    assert f"ReadWritePaths={config.parent}\n" in agent            # b's spool sits beside the config
    assert "ReadWritePaths=/mnt/spool-a\n" in agent


def test_shipped_units_are_what_the_command_writes(tmp_path: Path):
    """infra/systemd holds the units for the documented layout; regenerate them with the command below."""
    _write(tmp_path, "--cryospy", "/opt/cryospy/bin/cryospy", "--minio-bin", "/usr/local/bin/minio")
    shipped = ROOT / "infra" / "systemd"
    names = sorted(p.name for p in (tmp_path / "units").iterdir())
    assert names == sorted(p.name for p in shipped.iterdir() if p.suffix != ".md")
    for name in names:
        assert (tmp_path / "units" / name).read_text() == (shipped / name).read_text(), (
            f"infra/systemd/{name} is stale: run `cryospy service units --out infra/systemd --cryospy "
            "/opt/cryospy/bin/cryospy --minio-bin /usr/local/bin/minio`")


def test_units_warn_when_the_service_user_could_not_reach_the_programs(tmp_path: Path):
    proc = _write(tmp_path, "--cryospy", "/root/venv/bin/cryospy", "--minio-bin", "/home/me/minio")
    assert "/root/venv/bin/cryospy, which the service cannot see" in proc.stderr
    assert "install -m 0755 /home/me/minio /usr/local/bin/minio" in proc.stderr


def test_unit_quoting_escapes_specifiers_variables_and_spaces():
    assert units.quote("/var/lib/cryospy") == "/var/lib/cryospy"
    assert units.quote("/srv/a b") == '"/srv/a b"'
    assert units.quote("/srv/100%$HOME") == '"/srv/100%%$$HOME"'
    assert units.quote('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_reaches_the_notify_socket_and_children_do_not_inherit_it(tmp_path: Path, abstract: bool):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        name = f"@cryospy-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
        server.bind("\0" + name[1:] if abstract else name)
        server.settimeout(5)
        env = {"NOTIFY_SOCKET": name, "OTHER": "1"}
        notifier = Notifier.claim(env)
        assert env == {"OTHER": "1"}                  # what MinIO and ffmpeg inherit
        assert notifier.notify("READY=1")
        assert server.recv(100) == b"READY=1"
    assert not Notifier.claim({}).notify("READY=1")  # no service manager: nothing to tell


def test_journal_stream_is_recognised_only_for_the_stream_it_names(tmp_path: Path):
    with open(tmp_path / "journal", "w") as named, open(tmp_path / "other", "w") as other:
        info = os.fstat(named.fileno())
        env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert writes_to_journal(named, env)
        assert not writes_to_journal(other, env)       # e.g. a child whose stderr went to a file
        assert not writes_to_journal(named, {"JOURNAL_STREAM": "garbage"})
        assert not writes_to_journal(io.StringIO(), env)


def test_journal_lines_carry_priorities_on_every_line_and_no_timestamp():
    formatter = JournalFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("cryospy.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    lines = formatter.format(record).splitlines()
    assert lines[0] == "<3>ERROR cryospy.x: failed here"
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
    for level, prefix in ((logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
                          (logging.CRITICAL, "<2>")):
        assert formatter.format(logging.LogRecord("n", level, "", 1, "m", (), None)).startswith(prefix)


def test_terminal_lines_carry_date_time_and_level():
    stream = io.StringIO()
    configure_logging("warning", stream)
    try:
        logging.getLogger("cryospy.test").info("hidden")
        logging.getLogger("cryospy.test").warning("shown")
    finally:
        configure_logging("info", sys.stderr)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} WARNING cryospy\.test: shown\n", stream.getvalue())


def test_secrets_are_masked_in_messages_and_tracebacks():
    secrets = SecretFilter()
    secrets.add(["s3cr3t-admin-token-value", "short"])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(secrets)
    logger = logging.getLogger("cryospy.test.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s to rtsp://admin:pw@cam/1 via http://h/k?X-Amz-Credential=AK%%2F1&"
                       "X-Amz-Signature=abcdef0123", "s3cr3t-admin-token-value")
        try:
            raise RuntimeError("failed with s3cr3t-admin-token-value")
        except RuntimeError:
            logger.exception("oops")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "s3cr3t" not in text and "admin:pw" not in text and "abcdef0123" not in text and "AK%2F1" not in text
    assert "rtsp://***@cam/1" in text and "X-Amz-Signature=***" in text
    assert "RuntimeError: failed with ***" in text
    assert secrets.mask("a short word") == "a short word"    # too short to register: ordinary words stay


def test_log_level_is_accepted_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--log-level", "WARNING", "serve"]).log_level == "warning"
    assert parser.parse_args(["serve", "--log-level", "debug"]).log_level == "debug"
    assert parser.parse_args(["agent", "--config", "a.json", "--log-level", "error"]).log_level == "error"
    assert parser.parse_args(["-v", "minio", "build"]).log_level == "debug"
    assert not hasattr(parser.parse_args(["serve"]), "log_level")       # main() then uses info
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-level", "loud", "serve"])


def test_secret_fields_are_the_fields_kept_out_of_the_repr(tmp_path: Path):
    from cryospy.cli.log_setup import secret_fields
    from tests.conftest import new_deployment

    dep = new_deployment(tmp_path / "dep")
    assert set(secret_fields(dep)) == {dep.minio_root_password, dep.presigner_secret, dep.handler_secret,
                                       dep.webhook_token, dep.admin_token}


def test_every_subcommand_and_action_the_parser_offers_has_exactly_one_function():
    import argparse

    from cryospy.cli.main import COMMANDS

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    offered = set()
    for name, sub in choices(build_parser()).items():
        actions = choices(sub)
        offered |= {(name, action) for action in actions} if actions else {(name, None)}
    assert offered == set(COMMANDS)
