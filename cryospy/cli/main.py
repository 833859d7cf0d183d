"""The ``cryospy`` command line. Subcommands are grouped by noun; expected failures print one line.

Exit codes: 0 success, 1 a CryoSpy error, 2 bad usage or config, 3 infrastructure (MinIO, ports),
4 agent, 5 the runtime's API refused or is unreachable, 6 verification found problems, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cryospy import __version__
from cryospy.common.errors import CryoSpyError

from . import accounts_cmd
from .log_setup import LEVELS, SECRETS, configure_logging, secret_fields
from .systemd_units import DEFAULT_AGENT_CONFIG, DEFAULT_UNIT_DATA_DIR, DEFAULT_UNIT_USER

if TYPE_CHECKING:
    from cryospy.common.keys import KeyStore
    from cryospy.infra.jobqueue import JobStore

log = logging.getLogger(__name__)
DEFAULT_DATA_DIR = Path(os.environ.get("CRYOSPY_DATA_DIR", "var/cryospy"))


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="the deployment's state directory (default: %(default)s or $CRYOSPY_DATA_DIR)")


def _passphrase_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passphrase-file", type=Path,
                   help="read the admin passphrase from this file, - for standard input (else "
                        "$CRYOSPY_PASSPHRASE, else a prompt)")


def _log_level(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--log-level", choices=LEVELS, default=default, type=str.lower,
                   help="how much to log on standard error (default: info); under systemd the lines carry "
                        "journald priorities")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryospy",
        description="CryoSpy: self-hosted, privacy-first home surveillance. Clips are sealed on the camera, "
                    "stored in MinIO, and only your passphrase opens them.")
    parser.add_argument("--version", action="version", version=f"cryospy {__version__}")
    _log_level(parser, argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="store_const", const="debug", dest="log_level",
                        default=argparse.SUPPRESS, help="the same as --log-level debug")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo_parser(sub)
    _add_setup_parser(sub)
    _add_serve_parser(sub)
    _add_camera_parsers(sub)
    _add_upkeep_parsers(sub)
    return parser


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """demo: MinIO, the runtime and a demo camera in one go."""
    p = sub.add_parser("demo", help="run MinIO, the runtime and a demo camera in one go")
    p.add_argument("--data-dir", type=Path, default=Path("var/demo"), help="default: %(default)s")
    p.add_argument("--seconds", type=float, help="stop by itself after this many seconds")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="length of each demo clip (default 10)")
    _log_level(p, argparse.SUPPRESS)


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """serve: MinIO and the runtime."""
    p = sub.add_parser("serve", help="run MinIO and the runtime (API, event handlers, dashboard)")
    _data_dir(p)
    _passphrase_file(p)
    p.add_argument("--locked", action="store_true",
                   help="start without the passphrase; processing waits until an admin logs in")
    p.add_argument("--external-minio", action="store_true", help="MinIO is already running; do not start one")
    p.add_argument("--workers", type=int, default=2)
    _log_level(p, argparse.SUPPRESS)


def _add_setup_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Setup: a new deployment, its address, tls, drives or an external minio."""
    p = sub.add_parser("setup", help="create a new deployment (credentials and keys)")
    _data_dir(p)
    _passphrase_file(p)
    p.add_argument("--host", default="",
                   help="this server's LAN address (or name) that cameras and browsers use; the runtime and MinIO "
                        "listen there and agent configs point there (default: the address of the default route; "
                        "127.0.0.1 keeps everything on this machine)")
    p.add_argument("--runtime-port", type=int, default=8480, help="the device API (and the dashboard unless "
                                                                  "--dashboard-port); default %(default)s")
    p.add_argument("--dashboard-port", type=int, default=0,
                   help="serve the dashboard and the admin API on this port instead; the runtime port then answers "
                        "only cameras and MinIO (and this port 404s their routes)")
    p.add_argument("--dashboard-host", default="",
                   help="address the dashboard port listens on (default: --host; e.g. 127.0.0.1 to reach it only "
                        "through an SSH tunnel or a local reverse proxy)")
    p.add_argument("--no-tls", action="store_true",
                   help="plain HTTP: only behind a reverse proxy that does TLS (docs/tls.md), or on 127.0.0.1")
    p.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                   help="another name the server certificates carry (e.g. cryospy.lan); repeatable")
    p.add_argument("--tls-dir", type=Path, default=None, metavar="DIR",
                   help="make no CA: take ca.crt, runtime.crt and runtime.key from DIR, where another process "
                        "issues and renews them (docker-compose.yml's tls-init service); the runtime only reads them")
    p.add_argument("--minio-port", type=int, default=9480)
    p.add_argument("--minio-public-url", default="", help="URL devices use to reach MinIO, if not the local one")
    p.add_argument("--public-api-url", default="", help="URL devices use to reach the API, if not the local one")
    p.add_argument("--minio-url", default="", help="MinIO runs elsewhere (containers: http://minio:9000)")
    p.add_argument("--bind-host", default="", help="address the runtime listens on (containers: 0.0.0.0)")
    p.add_argument("--browser", action="store_true",
                   help="choose the admin passphrase later, in the browser: `cryospy serve` then offers first-run "
                        "setup at /setup, protected by a one-time code it writes into the data directory")
    p.add_argument("--from-env", action="store_true",
                   help="take MinIO's root credentials and the webhook token from MINIO_ROOT_USER, "
                        "MINIO_ROOT_PASSWORD and CRYOSPY_WEBHOOK_TOKEN (docker compose sets them)")
    p.add_argument("--drive", action="append", default=[], metavar="PATH",
                   help="a folder on a disk of its own for MinIO; repeat it (2-16 drives, e.g. 4): MinIO then "
                        "erasure-codes every clip across them, so a drive can die without losing footage "
                        "(docs/scale-out.md). Default: one drive in the data directory")
    p.add_argument("--parity", type=int, default=0, metavar="N",
                   help="parity drives per object (MinIO's EC:N, at most half the drives); default MinIO's: 2 for "
                        "4-5 drives, 3 for 6-7, 4 for 8-16. N drives may fail without losing footage")
    p.add_argument("--drives-share-disk", action="store_true",
                   help="accept --drive folders on one disk or on the system disk (MinIO refuses those otherwise): "
                        "survives a wiped folder, not a dead disk; for trying the layout out")
    p.add_argument("--external-minio", default="", metavar="URL",
                   help="use a MinIO run elsewhere (e.g. a multi-node cluster behind a load balancer) at URL "
                        "instead of starting one; its root credentials come from MINIO_ROOT_USER and "
                        "MINIO_ROOT_PASSWORD, and each of its servers needs `cryospy minio node-env` "
                        "(docs/scale-out.md)")


def _add_camera_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Devices, dashboard access, accounts, the agent and its service units."""
    p = sub.add_parser("devices", help="enrol and list cameras")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = dsub.add_parser("create", help="enrol a camera and write its agent config")
    _data_dir(d)
    d.add_argument("device_id")
    where = d.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="where to write the agent config (0600)")
    where.add_argument("--add-to", type=Path, help="add the camera to this agent config (created if missing): one "
                                                   "agent process then records every camera listed in it")
    d.add_argument("--camera", default=None, help="camera_device for the agent config (e.g. rtsp://user:pw@cam/1)")
    d.add_argument("--detect", default=None, help="the camera's low-resolution sub-stream URL, decoded for motion")
    d.add_argument("--agent-generates-key", action="store_true",
                   help="make no signing key here: the agent makes its own at first start and registers it")
    d = dsub.add_parser("list", help="list enrolled cameras")
    _data_dir(d)

    p = sub.add_parser("dashboard", help="the dashboard's admin access")
    dash = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = dash.add_parser("login-link", help="print a one-time login link (works while failed logins are throttled)")
    _data_dir(d)
    d.add_argument("--minutes", type=int, default=10, help="how long the link stays valid, 1-60 (default 10)")
    d.add_argument("--account", default="admin", help="the account the link logs in (default: admin)")

    accounts_cmd.add_parser(sub, _data_dir, _passphrase_file)

    p = sub.add_parser("agent", help="run the edge agent beside a camera")
    p.add_argument("--config", type=Path, required=True, help="agent config written by `devices create`")
    _log_level(p, argparse.SUPPRESS)

    p = sub.add_parser("service", help="run CryoSpy as a system service (systemd)")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = ssub.add_parser("units", help="write hardened systemd units for `serve` and `agent`, and the user they run as")
    s.add_argument("--data-dir", type=Path, default=Path(DEFAULT_UNIT_DATA_DIR),
                   help="the deployment's state directory, as the service sees it (default: %(default)s)")
    s.add_argument("--user", default=DEFAULT_UNIT_USER, help="the dedicated user both services run as "
                                                             "(default: %(default)s; created by the sysusers file)")
    s.add_argument("--out", type=Path, required=True, help="folder to write the unit files into "
                                                          "(e.g. /etc/systemd/system)")
    s.add_argument("--agent-config", type=Path, default=Path(DEFAULT_AGENT_CONFIG),
                   help="the agent config the agent unit runs (default: %(default)s)")
    s.add_argument("--passphrase-file", type=Path,
                   help="a root-only file with the admin passphrase, handed to `serve` as a systemd credential "
                        "so it starts unlocked (default: it starts locked until an admin logs in)")
    s.add_argument("--minio-bin", type=Path, help="the MinIO server binary (default: the one `cryospy minio build` "
                                                  "finds now)")
    s.add_argument("--cryospy", type=Path, help="the cryospy command the units run (default: this one)")


def _add_upkeep_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Events, keys, verify and minio helpers."""
    p = sub.add_parser("events", help="inspect the event queue")
    esub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = esub.add_parser("dead", help="list dead-lettered events and why")
    _data_dir(e)
    e = esub.add_parser("retry", help="queue dead-lettered events again")
    _data_dir(e)
    e.add_argument("--id", type=int, help="only this job (default: all)")

    p = sub.add_parser("db", help="where the clip index and the job queue live (docs/postgres.md)")
    dbsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = dbsub.add_parser("migrate", help="move the index (clips, protected flags, fragment tables, live numbering), "
                                         "the job queue (dead letters too) and the device registry to PostgreSQL "
                                         "or back, verified")
    _data_dir(d)
    _passphrase_file(d)
    d.add_argument("--to", choices=("postgres", "embedded"), required=True,
                   help="postgres: from the embedded files into the database; embedded: from the database back")
    d.add_argument("--database-url", default=None, metavar="URL",
                   help="the database (default: database_url in server.json, which is better: a command line is "
                        "visible to the machine's other users)")
    d.add_argument("--force", action="store_true", help="empty the target first if it already holds clips or jobs")

    p = sub.add_parser("keys", help="the deployment's keys")
    ksub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    k = ksub.add_parser("show", help="print the current public key (what agent configs need)")
    _data_dir(k)
    k = ksub.add_parser("rotate", help="make a new key pair; old clips stay readable, new ones use the new key")
    _data_dir(k)
    _passphrase_file(k)
    k = ksub.add_parser("change-passphrase", help="re-wrap the private keys under a new passphrase")
    _data_dir(k)
    k.add_argument("--old-passphrase-file", type=Path, help="file with the current passphrase")
    k.add_argument("--new-passphrase-file", type=Path, help="file with the new passphrase")

    p = sub.add_parser("verify", help="check sealed clips or an export offline: signatures, content, chain, gaps")
    p.add_argument("path", type=Path, help="a sealed .cse file or a folder of them")
    p.add_argument("--devices", type=Path, help="JSON map of device id to verify key (default: PATH's manifest.json)")

    p = sub.add_parser("minio", help="MinIO helpers")
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    msub.add_parser("build", help="find or build the MinIO server binary and print its path")
    m = msub.add_parser("node-env", help="print the environment every server of an external MinIO needs (the "
                                         "deployment's webhook target, with its token: keep the output private)")
    _data_dir(m)
    m.add_argument("--queue-dir", default="/var/lib/minio-cryospy-events",
                   help="an absolute folder on each MinIO server where it keeps events until the runtime has "
                        "them (default: %(default)s)")

    p = sub.add_parser("runtime", help="several runtimes on one PostgreSQL and one MinIO (docs/scale-out.md)")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = rsub.add_parser("add", help="make a data directory for another runtime of this deployment (it holds the "
                                    "deployment's keys: keep it private)")
    _data_dir(r)
    r.add_argument("--runtime-dir", type=Path, required=True, help="the new runtime's own (empty) data directory")
    r.add_argument("--port", type=int, required=True, help="the new runtime's port (device API, webhook, dashboard)")


def run(args: argparse.Namespace) -> int:
    """Run the function of the subcommand (and action) that ``args`` names: see :data:`COMMANDS`."""
    return COMMANDS[(args.command, getattr(args, "action", None))](args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.data_dir, seconds=args.seconds, clip_seconds=args.clip_seconds)


def _setup(args: argparse.Namespace) -> int:
    from cryospy.infra.lan_address import find_lan_address

    from .passphrase import read_passphrase
    from .setup_cmd import setup

    if args.browser and args.passphrase_file is not None:
        print("cryospy: --browser and --passphrase-file exclude each other: with --browser the passphrase is "
              "chosen on the dashboard's /setup page", file=sys.stderr)
        return 2
    passphrase = None if args.browser else read_passphrase(args.passphrase_file, confirm=True)
    from_env = {}
    if args.from_env:
        from_env = {"minio_root_user": os.environ.get("MINIO_ROOT_USER", ""),
                    "minio_root_password": os.environ.get("MINIO_ROOT_PASSWORD", ""),
                    "webhook_token": os.environ.get("CRYOSPY_WEBHOOK_TOKEN", "")}
        missing = [k for k, v in from_env.items() if not v]
        if missing:
            print(f"cryospy: --from-env needs {', '.join(missing)} in the environment", file=sys.stderr)
            return 2
    external = _external_minio(args)
    if external is None:
        return 2
    host = args.host or find_lan_address()
    if not host:
        print("cryospy: this machine has no LAN address (no default route); pass --host with the address "
              "cameras use, or --host 127.0.0.1 to keep everything on this machine", file=sys.stderr)
        return 2
    if args.no_tls and args.tls_dir is not None:
        print("cryospy: --no-tls and --tls-dir exclude each other", file=sys.stderr)
        return 2
    tls_dir = str(args.tls_dir.resolve()) if args.tls_dir is not None else ""
    dep = setup(args.data_dir, passphrase, tls=not args.no_tls, tls_dir=tls_dir, host=host,
                runtime_port=args.runtime_port,
                minio_port=args.minio_port, minio_console_port=args.minio_port + 1,
                dashboard_port=args.dashboard_port, dashboard_host=args.dashboard_host,
                tls_names=tuple(args.tls_name), minio_public_url=args.minio_public_url,
                public_api_url=args.public_api_url,
                bind_host=args.bind_host, minio_drives=tuple(args.drive), minio_parity=args.parity,
                minio_drives_share_disk=args.drives_share_disk, **{**from_env, **external})
    print(f"Deployment created in {dep.data_dir}. Start it with: cryospy serve --data-dir {dep.data_dir}")
    print(f"Cameras will use {dep.api_url}; the dashboard will be at {dep.dashboard_url}/")
    if dep.minio_drives:
        print(f"MinIO will erasure-code clips across {len(dep.minio_drives)} drives "
              f"({dep.minio_parity or 'default'} parity): {', '.join(dep.minio_drives)}")
    if dep.minio_external:
        print(f"MinIO is external ({dep.minio_url}): give each of its servers the environment that "
              f"`cryospy minio node-env --data-dir {dep.data_dir}` prints, then start cryospy serve.")
    if dep.tls:
        print(f"TLS is on with this deployment's own certificate authority. Agent configs from `cryospy devices "
              f"create` carry it; for browsers, install {dep.ca_file} as a trusted authority (docs/tls.md).")
    if passphrase is None:
        print(f"Then open {dep.dashboard_url}/setup and choose the admin passphrase; the one-time setup code "
              "is printed by `cryospy serve` and kept in setup-code.txt in the data directory.")
    return 0


def _devices_create(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load

    from .devices import create_device

    overrides = {k: v for k, v in (("camera_device", args.camera), ("detect_device", args.detect)) if v}
    target = args.out or args.add_to
    create_device(load(args.data_dir), args.device_id, args.out, overrides,
                  agent_generates_key=args.agent_generates_key, add_to=args.add_to)
    print(f"Enrolled {args.device_id}. Its agent config (with the secret, shown nowhere else) is in "
          f"{target}. Run: cryospy agent --config {target}")
    if args.agent_generates_key:
        print("The agent makes its signing key at first start and logs its fingerprint; compare it with "
              "the device's fingerprint on the dashboard.")
    return 0


def _devices_list(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load

    from .devices import list_devices

    for d in list_devices(load(args.data_dir)):
        state = "enabled" if d["enabled"] else "disabled"
        key = d.get("signing_key_fingerprint") or "waiting for the agent's key"
        print(f"{d['device_id']:<24} {state:<9} last seen {d['last_seen'] or 'never':<26} "
              f"token {d.get('storage_token') or '-'} key {key}")
    return 0


def _dashboard_login_link(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load
    from cryospy.infra.server_config import load_server_config
    from cryospy.infra.stores import open_login_links

    dep = load(args.data_dir)
    # With database_url the link is a row every runtime of the deployment can redeem.
    links = open_login_links(dep, load_server_config(dep.path("server.json")))
    try:
        token = links.issue(args.minutes, args.account)
    finally:
        links.close()
    print(f"One-time login link, valid for {args.minutes} min (open it in your browser; it works once):",
          file=sys.stderr)
    print(f"{dep.dashboard_url}/login/link?token={token}")
    return 0


def _agent(args: argparse.Namespace) -> int:
    from cryospy.edge_agent.agent import run_agents
    from cryospy.edge_agent.config import load_configs
    from cryospy.edge_agent.stream_url import url_password

    configs = load_configs(args.config)
    for config in configs:
        SECRETS.add([*secret_fields(config), url_password(config.camera_device),
                     url_password(config.detect_device)])
    run_agents(configs)
    return 0


def _job_queue(args: argparse.Namespace) -> JobStore:
    """The deployment's job queue (SQLite, or PostgreSQL when server.json has a database_url). recover=False:
    a running runtime's claimed jobs are its own, not a crash's leftovers."""
    from cryospy.infra.deployment import load
    from cryospy.infra.server_config import load_server_config
    from cryospy.infra.stores import open_job_store

    dep = load(args.data_dir)
    return open_job_store(dep, load_server_config(dep.path("server.json")), recover=False)


def _events_dead(args: argparse.Namespace) -> int:
    queue = _job_queue(args)
    try:
        dead = queue.dead_letters()
    finally:
        queue.close()
    for job in dead:
        print(f"#{job.id} {job.handler} {job.key}: {job.reason}")
    print(f"{len(dead)} dead-lettered event(s)")
    return 0


def _events_retry(args: argparse.Namespace) -> int:
    queue = _job_queue(args)
    try:
        count = queue.requeue_dead(args.id)
    finally:
        queue.close()
    print(f"requeued {count} event(s); a running runtime picks them up now")
    return 0


def _db_migrate(args: argparse.Namespace) -> int:
    from cryospy.infra import db_migrate
    from cryospy.infra.deployment import load
    from cryospy.infra.server_config import load_server_config

    from .passphrase import read_passphrase

    dep = load(args.data_dir)
    url = args.database_url or load_server_config(dep.path("server.json")).database_url
    if not url:
        raise db_migrate.MigrationError("which database? Pass --database-url or set database_url in server.json")
    db_migrate.refuse_if_runtime_runs(dep)
    passphrase = read_passphrase(args.passphrase_file)
    assert passphrase is not None
    with _key_store(args) as store:
        index_key = store.unlock(passphrase).index_key
    report = db_migrate.run(dep, url, args.to, index_key, force=args.force, progress=print)
    print(f"Copied and verified {report.clips} clip(s) of {report.devices} camera(s) over {report.days} day(s), "
          f"{report.jobs} queue row(s) ({report.dead_letters} dead letter(s)) and {report.registered} registered "
          f"camera(s) in {report.seconds:.1f} s.")
    if args.to == "postgres":
        print("Next: set database_url in server.json to this database (if not there yet) and start the runtime. "
              f"The embedded files in {dep.data_dir} are untouched: delete index/ and runtime/jobs.sqlite once "
              "you are happy.")
    else:
        print("Next: remove database_url from server.json and start the runtime. The database is untouched.")
    return 0


@contextlib.contextmanager
def _key_store(args: argparse.Namespace) -> Iterator[KeyStore]:
    """The key store; with database_url set, the copy every runtime shares (a change is written through)."""
    from cryospy.infra.deployment import load
    from cryospy.infra.stores import key_store

    with key_store(load(args.data_dir)) as store:
        yield store


def _keys_show(args: argparse.Namespace) -> int:
    with _key_store(args) as store:
        print(store.current_public_key().to_text())
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from .passphrase import read_passphrase

    passphrase = read_passphrase(args.passphrase_file)
    assert passphrase is not None
    with _key_store(args) as store:
        new = store.rotate(passphrase)
    print(f"New deployment key {new.key_id} is current; clips sealed to older keys stay readable.")
    print("Give cameras the new public key (deployment_public_key in each agent config) and restart the "
          f"runtime:\n{new.to_text()}")
    return 0


def _keys_change_passphrase(args: argparse.Namespace) -> int:
    from .passphrase import read_passphrase

    old = read_passphrase(args.old_passphrase_file)
    new_pass = read_passphrase(args.new_passphrase_file, confirm=args.new_passphrase_file is None)
    assert old is not None and new_pass is not None
    with _key_store(args) as store:
        store.change_passphrase(old, new_pass)
    print("Passphrase changed. No clip was touched; use the new passphrase from now on.")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .verify import run as run_verify

    return run_verify(args.path, args.devices)


def _minio_node_env(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load
    from cryospy.infra.minio_server import webhook_env

    if not args.queue_dir.startswith("/"):
        print("cryospy: --queue-dir must be an absolute path (MinIO refuses others)", file=sys.stderr)
        return 2
    for name, value in webhook_env(load(args.data_dir), args.queue_dir).items():
        print(f"{name}={value}")
    return 0


def _runtime_add(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load
    from cryospy.infra.runtime_instances import add_runtime

    new = add_runtime(load(args.data_dir), args.runtime_dir, args.port)
    print(f"Runtime added: {new.runtime_url}. Restart `cryospy serve --data-dir {args.data_dir}` (its MinIO then "
          f"delivers events to every runtime), then start `cryospy serve --data-dir {new.data_dir}`.")
    return 0


def _minio_build(args: argparse.Namespace) -> int:
    from cryospy.infra.minio_binary import ensure_minio

    print(ensure_minio())
    return 0


def _service_units(args: argparse.Namespace) -> int:
    from cryospy.infra.minio_binary import find_minio

    from . import systemd_units as units

    minio = args.minio_bin or find_minio()
    options = units.UnitOptions(
        data_dir=args.data_dir.absolute(), user=args.user, agent_config=args.agent_config.absolute(),
        cryospy=(str(args.cryospy),) if args.cryospy else units.this_cryospy(),
        minio_bin=minio.absolute() if minio else None,
        passphrase_file=args.passphrase_file.absolute() if args.passphrase_file else None,
        agent_paths=units.agent_spools(args.agent_config.absolute()))
    for path in units.write_units(options, args.out):
        print(f"wrote {path}")
    for problem in units.warnings(options):
        print(f"cryospy: warning: {problem}", file=sys.stderr)
    data = options.data_dir
    print(f"""Next, as root:
  install -m 0644 {args.out / units.SYSUSERS_FILE} /etc/sysusers.d/cryospy.conf && systemd-sysusers
  install -d -o {args.user} -g {args.user} -m 0700 {data}
  runuser -u {args.user} -- {" ".join(options.cryospy)} setup --data-dir {data} --browser   # if new
  systemctl daemon-reload && systemctl enable --now {units.SERVE_UNIT}
  journalctl -u {units.SERVE_UNIT} -f
The agent unit runs {options.agent_config} (owned by {args.user}, mode 0600); enable {units.AGENT_UNIT} where a \
camera is attached.""")
    return 0


def _external_minio(args: argparse.Namespace) -> dict[str, object] | None:
    """``setup --external-minio URL``: the deployment settings for a MinIO run elsewhere (None: refused, said why)."""
    from urllib.parse import urlsplit

    if not args.external_minio:
        return {"minio_internal_url": args.minio_url}
    url = urlsplit(args.external_minio)
    problem = ""
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
        problem = "--external-minio needs the URL of MinIO's S3 address, e.g. http://minio-lb.lan:9000"
    elif args.drive or args.minio_url:
        problem = "--external-minio excludes --drive and --minio-url: the external MinIO has its own drives"
    elif not (os.environ.get("MINIO_ROOT_USER") and os.environ.get("MINIO_ROOT_PASSWORD")):
        problem = ("--external-minio needs the cluster's root credentials in MINIO_ROOT_USER and MINIO_ROOT_PASSWORD "
                   "(to create CryoSpy's bucket, identities and notifications on it)")
    if problem:
        print(f"cryospy: {problem}", file=sys.stderr)
        return None
    return {"minio_internal_url": args.external_minio.rstrip("/"), "minio_external": True,
            "minio_root_user": os.environ["MINIO_ROOT_USER"], "minio_root_password": os.environ["MINIO_ROOT_PASSWORD"]}


def _serve(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load, make_private
    from cryospy.infra.minio_server import MinioServer
    from cryospy.infra.runtime import Runtime, RuntimeOptions

    from .passphrase import read_passphrase
    from .sd_notify import Notifier
    from .setup_cmd import announce_browser_setup

    os.umask(0o077)              # the queue, registry, index, logs and MinIO's files: this user's only
    dep = load(args.data_dir)
    make_private(dep.data_dir)   # every start: a restore or a copy may have loosened it
    needs_setup = not dep.keys_path.exists()   # made with `setup --browser`: the passphrase is chosen at /setup
    passphrase = None if args.locked or needs_setup else read_passphrase(args.passphrase_file, required=False)

    stopping = threading.Event()

    def _terminate(*_: object) -> None:
        stopping.set()   # SIGTERM (systemd, docker stop): drain and stop, exit 0

    signal.signal(signal.SIGTERM, _terminate)
    service_manager = Notifier.claim()
    SECRETS.add(secret_fields(dep))
    if passphrase:
        SECRETS.add([passphrase])
    minio = None if args.external_minio or dep.minio_external else MinioServer(dep).start()
    runtime = None
    try:
        runtime = Runtime(dep, RuntimeOptions(workers=args.workers))
        if passphrase:
            runtime.unlock(passphrase)
        runtime.start()
        if runtime.setup_code_path is not None:
            announce_browser_setup(dep.dashboard_url, runtime.setup_code_path)
        else:
            where = dep.runtime_url if not dep.dashboard_port else f"{dep.runtime_url} (dashboard {dep.dashboard_url})"
            print(f"CryoSpy runtime on {where}/ (MinIO {dep.minio_url}); "
                  f"{'unlocked' if passphrase else 'LOCKED: log in to the dashboard to start processing'}",
                  flush=True)
        service_manager.notify("READY=1")
        while not stopping.wait(3600):
            pass
        log.info("SIGTERM: finishing in-flight requests and jobs, then stopping")
        service_manager.notify("STOPPING=1")
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if runtime is not None:
            runtime.stop()
        if minio is not None:
            minio.stop()
        if stopping.is_set():
            log.info("stopped cleanly")


# (subcommand, action) -> the function that runs it; action is None for subcommands without actions.
COMMANDS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("demo", None): _demo,
    ("setup", None): _setup,
    ("serve", None): _serve,
    ("devices", "create"): _devices_create,
    ("devices", "list"): _devices_list,
    ("dashboard", "login-link"): _dashboard_login_link,
    ("agent", None): _agent,
    ("service", "units"): _service_units,
    ("events", "dead"): _events_dead,
    ("events", "retry"): _events_retry,
    ("db", "migrate"): _db_migrate,
    ("keys", "show"): _keys_show,
    ("keys", "rotate"): _keys_rotate,
    ("keys", "change-passphrase"): _keys_change_passphrase,
    ("verify", None): _verify,
    ("minio", "build"): _minio_build,
    ("minio", "node-env"): _minio_node_env,
    ("runtime", "add"): _runtime_add,
    ("accounts", "list"): accounts_cmd.list_accounts,
    ("accounts", "add"): accounts_cmd.add_account,
    ("accounts", "remove"): accounts_cmd.remove_account,
    ("accounts", "passwd"): accounts_cmd.set_passphrase,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "log_level", "info"), sys.stderr)
    # Ctrl-C stops serve, demo and agent even when a shell started us in the background: such a shell sets
    # SIGINT to "ignore", which Python would otherwise keep (the process then could only be killed).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(args)
    except CryoSpyError as exc:
        print(f"cryospy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
