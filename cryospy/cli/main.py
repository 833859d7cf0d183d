"""The ``cryospy`` command line. Subcommands are grouped by noun; expected failures print one line.

Exit codes: 0 success, 1 a CryoSpy error, 2 bad usage or config, 3 infrastructure (MinIO, ports),
4 agent, 5 the runtime's API refused or is unreachable, 6 verification found problems, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from cryospy import __version__
from cryospy.common.errors import CryoSpyError

DEFAULT_DATA_DIR = Path(os.environ.get("CRYOSPY_DATA_DIR", "var/cryospy"))


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="the deployment's state directory (default: %(default)s or $CRYOSPY_DATA_DIR)")


def _passphrase_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passphrase-file", type=Path,
                   help="read the admin passphrase from this file, - for standard input (else "
                        "$CRYOSPY_PASSPHRASE, else a prompt)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cryospy",
        description="CryoSpy: self-hosted, privacy-first home surveillance. Clips are sealed on the camera, "
                    "stored in MinIO, and only your passphrase opens them.")
    parser.add_argument("--version", action="version", version=f"cryospy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run MinIO, the runtime and a demo camera in one go")
    p.add_argument("--data-dir", type=Path, default=Path("var/demo"), help="default: %(default)s")
    p.add_argument("--seconds", type=float, help="stop by itself after this many seconds")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="length of each demo clip (default 10)")

    p = sub.add_parser("setup", help="create a new deployment (credentials and keys)")
    _data_dir(p)
    _passphrase_file(p)
    p.add_argument("--runtime-port", type=int, default=8480)
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

    p = sub.add_parser("serve", help="run MinIO and the runtime (API, event handlers, dashboard)")
    _data_dir(p)
    _passphrase_file(p)
    p.add_argument("--locked", action="store_true",
                   help="start without the passphrase; processing waits until an admin logs in")
    p.add_argument("--external-minio", action="store_true", help="MinIO is already running; do not start one")
    p.add_argument("--workers", type=int, default=2)

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

    p = sub.add_parser("agent", help="run the edge agent beside a camera")
    p.add_argument("--config", type=Path, required=True, help="agent config written by `devices create`")

    p = sub.add_parser("events", help="inspect the event queue")
    esub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = esub.add_parser("dead", help="list dead-lettered events and why")
    _data_dir(e)
    e = esub.add_parser("retry", help="queue dead-lettered events again")
    _data_dir(e)
    e.add_argument("--id", type=int, help="only this job (default: all)")

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
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        force=True)
    for noisy in ("botocore", "urllib3", "waitress"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.data_dir, seconds=args.seconds, clip_seconds=args.clip_seconds)
    if args.command == "setup":
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
        dep = setup(args.data_dir, passphrase, runtime_port=args.runtime_port, minio_port=args.minio_port,
                    minio_console_port=args.minio_port + 1, minio_public_url=args.minio_public_url,
                    public_api_url=args.public_api_url, minio_internal_url=args.minio_url,
                    bind_host=args.bind_host, **from_env)
        print(f"Deployment created in {dep.data_dir}. Start it with: cryospy serve --data-dir {dep.data_dir}")
        if passphrase is None:
            print(f"Then open {dep.runtime_url}/setup and choose the admin passphrase; the one-time setup code "
                  "is printed by `cryospy serve` and kept in setup-code.txt in the data directory.")
        return 0
    if args.command == "serve":
        return _serve(args)
    if args.command == "devices":
        from cryospy.infra.deployment import load

        from .devices import create_device, list_devices

        dep = load(args.data_dir)
        if args.action == "create":
            overrides = {k: v for k, v in (("camera_device", args.camera), ("detect_device", args.detect)) if v}
            target = args.out or args.add_to
            create_device(dep, args.device_id, args.out, overrides, agent_generates_key=args.agent_generates_key,
                          add_to=args.add_to)
            print(f"Enrolled {args.device_id}. Its agent config (with the secret, shown nowhere else) is in "
                  f"{target}. Run: cryospy agent --config {target}")
            if args.agent_generates_key:
                print("The agent makes its signing key at first start and logs its fingerprint; compare it with "
                      "the device's fingerprint on the dashboard.")
        else:
            for d in list_devices(dep):
                state = "enabled" if d["enabled"] else "disabled"
                key = d.get("signing_key_fingerprint") or "waiting for the agent's key"
                print(f"{d['device_id']:<24} {state:<9} last seen {d['last_seen'] or 'never':<26} "
                      f"token {d.get('storage_token') or '-'} key {key}")
        return 0
    if args.command == "dashboard":
        from cryospy.infra.deployment import load
        from cryospy.web.login_links import LINKS_DIR, LoginLinks

        dep = load(args.data_dir)
        token = LoginLinks(dep.path(*LINKS_DIR)).issue(args.minutes)
        print(f"One-time login link, valid for {args.minutes} min (open it in your browser; it works once):",
              file=sys.stderr)
        print(f"{dep.runtime_url}/login/link?token={token}")
        return 0
    if args.command == "agent":
        from cryospy.edge_agent.agent import run_agents
        from cryospy.edge_agent.config import load_configs

        run_agents(load_configs(args.config))
        return 0
    if args.command == "events":
        from cryospy.infra.deployment import load
        from cryospy.infra.jobqueue import JobQueue

        queue = JobQueue(load(args.data_dir).path("runtime", "jobs.sqlite"))
        if args.action == "dead":
            dead = queue.dead_letters()
            for job in dead:
                print(f"#{job.id} {job.handler} {job.key}: {job.reason}")
            print(f"{len(dead)} dead-lettered event(s)")
        else:
            print(f"requeued {queue.requeue_dead(args.id)} event(s); a running runtime picks them up now")
        return 0
    if args.command == "keys":
        return _keys(args)
    if args.command == "verify":
        from .verify import run as run_verify

        return run_verify(args.path, args.devices)
    if args.command == "minio":
        from cryospy.infra.minio_binary import ensure_minio

        print(ensure_minio())
        return 0
    raise AssertionError(args.command)


def _keys(args: argparse.Namespace) -> int:
    from cryospy.common.keys import KeyStore
    from cryospy.infra.deployment import load

    from .passphrase import read_passphrase

    store = KeyStore.load(load(args.data_dir).keys_path)
    if args.action == "show":
        print(store.current_public_key().to_text())
        return 0
    if args.action == "rotate":
        passphrase = read_passphrase(args.passphrase_file)
        assert passphrase is not None
        new = store.rotate(passphrase)
        print(f"New deployment key {new.key_id} is current; clips sealed to older keys stay readable.")
        print("Give cameras the new public key (deployment_public_key in each agent config) and restart the "
              f"runtime:\n{new.to_text()}")
        return 0
    old = read_passphrase(args.old_passphrase_file)
    new_pass = read_passphrase(args.new_passphrase_file, confirm=args.new_passphrase_file is None)
    assert old is not None and new_pass is not None
    store.change_passphrase(old, new_pass)
    print("Passphrase changed. No clip was touched; use the new passphrase from now on.")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cryospy.infra.deployment import load, make_private
    from cryospy.infra.minio_server import MinioServer
    from cryospy.infra.runtime import Runtime, RuntimeOptions

    from .passphrase import read_passphrase
    from .setup_cmd import announce_browser_setup

    os.umask(0o077)              # the queue, registry, index, logs and MinIO's files: this user's only
    dep = load(args.data_dir)
    make_private(dep.data_dir)   # every start: a restore or a copy may have loosened it
    needs_setup = not dep.keys_path.exists()   # made with `setup --browser`: the passphrase is chosen at /setup
    passphrase = None if args.locked or needs_setup else read_passphrase(args.passphrase_file, required=False)

    def _terminate(*_: object) -> None:
        raise KeyboardInterrupt   # SIGTERM (systemd, docker stop) stops as cleanly as Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    minio = None if args.external_minio else MinioServer(dep).start()
    runtime = None
    try:
        runtime = Runtime(dep, RuntimeOptions(workers=args.workers))
        if passphrase:
            runtime.unlock(passphrase)
        runtime.start()
        if runtime.setup_code_path is not None:
            announce_browser_setup(dep.runtime_url, runtime.setup_code_path)
        else:
            print(f"CryoSpy runtime on {dep.runtime_url}/ (MinIO {dep.minio_url}); "
                  f"{'unlocked' if passphrase else 'LOCKED: log in to the dashboard to start processing'}",
                  flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 130
    finally:
        if runtime is not None:
            runtime.stop()
        if minio is not None:
            minio.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return run(args)
    except CryoSpyError as exc:
        print(f"cryospy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
