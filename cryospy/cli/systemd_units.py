"""``cryospy service units``: hardened systemd units for ``cryospy serve`` and ``cryospy agent``.

Both services run as one dedicated, unprivileged system user (declared in a sysusers.d file written beside
the units) and see the machine read-only except for their own state directory (``ProtectSystem=strict``,
``StateDirectory=`` under /var/lib, ``ReadWritePaths=`` elsewhere). Neither can gain privileges, see /home,
load kernel modules, change the clock or open anything but IP and Unix sockets. What differs:

* ``cryospy.service`` (serve) gets no devices at all (``PrivateDevices=``) and its own user namespace; it is
  ``Type=notify`` (ready once the API and dashboard answer, see :mod:`.sd_notify`) and ``KillMode=mixed``, so
  SIGTERM reaches the runtime alone, which finishes in-flight requests and jobs before it stops its MinIO;
  the admin passphrase, if the service should start unlocked, arrives as a systemd credential
  (``LoadCredential=``) that only this service can read, never as an environment variable.
* ``cryospy-agent.service`` may open video4linux devices and nothing else in /dev (``DevicePolicy=closed``,
  ``DeviceAllow=char-video4linux``), with the ``video`` group as a supplementary group.

``MemoryDenyWriteExecute=`` is left out on purpose: libffi closures (ctypes and cffi callbacks in the
Python dependencies) need writable-and-executable pages, and the service would crash in an odd place.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_UNIT_DATA_DIR = "/var/lib/cryospy"
DEFAULT_UNIT_USER = "cryospy"
DEFAULT_AGENT_CONFIG = "/var/lib/cryospy-agent/agent.json"
SERVE_UNIT = "cryospy.service"
AGENT_UNIT = "cryospy-agent.service"
SYSUSERS_FILE = "cryospy-sysusers.conf"
STATE_ROOT = PurePosixPath("/var/lib")
HIDDEN_BY_PROTECT_HOME = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))

COMMON_HARDENING = """\
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
PrivateMounts=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
LockPersonality=yes
RemoveIPC=yes
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
"""


@dataclass(frozen=True)
class UnitOptions:
    data_dir: Path
    user: str
    agent_config: Path
    cryospy: tuple[str, ...]                # the command line that starts cryospy
    minio_bin: Path | None = None
    passphrase_file: Path | None = None
    agent_paths: tuple[Path, ...] = ()      # spool folders outside the agent config's folder


def this_cryospy() -> tuple[str, ...]:
    """The command that runs this installation: the ``cryospy`` script beside this Python (a venv's bin/),
    else ``python -m cryospy``. The interpreter's path is kept as is: resolving a venv's python symlink
    would leave the venv."""
    script = Path(sys.executable).with_name("cryospy")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "cryospy")


def quote(word: str) -> str:
    """One word of a unit file's command line or path list, escaped for systemd (specifiers, variables,
    quotes, spaces)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if any(c.isspace() for c in word) or escaped != word else escaped


def literal(value: str) -> str:
    """A setting whose value is the rest of the line (WorkingDirectory=, LoadCredential=): only specifiers
    need escaping; quotes would be taken as part of the path."""
    return value.replace("%", "%%")


def command_line(words: tuple[str, ...] | list[str]) -> str:
    return " ".join(quote(w) for w in words)


def writable_dir(path: Path) -> str:
    """A state directory under /var/lib is systemd's to create and own (``StateDirectory=``, writable even
    under ``ProtectSystem=strict``); anywhere else it must exist and is opened with ``ReadWritePaths=``."""
    posix = PurePosixPath(path)
    if posix.parent == STATE_ROOT:
        return f"StateDirectory={quote(posix.name)}\nStateDirectoryMode=0700\n"
    return f"ReadWritePaths={quote(str(posix))}\n"


def serve_unit(o: UnitOptions) -> str:
    words = [*o.cryospy, "serve", "--data-dir", str(o.data_dir)]
    credential = ""
    if o.passphrase_file is not None:
        credential = f"LoadCredential=passphrase:{literal(str(o.passphrase_file))}\n"
    minio = f"Environment={quote('CRYOSPY_MINIO_BIN=' + str(o.minio_bin))}\n" if o.minio_bin else ""
    # %d is the credentials directory; it is appended unquoted so that systemd expands it.
    exec_start = command_line(words) + (" --passphrase-file %d/passphrase" if credential else "")
    return f"""\
# Written by `cryospy service units`. CryoSpy's server: MinIO, the device API, the event handlers and the
# dashboard, in one service. Logs: journalctl -u {SERVE_UNIT}
[Unit]
Description=CryoSpy server (MinIO, device API, event handlers, dashboard)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
User={o.user}
Group={o.user}
ExecStart={exec_start}
{credential}{minio}Environment=PYTHONUNBUFFERED=1
WorkingDirectory={literal(str(o.data_dir))}
{writable_dir(o.data_dir)}# SIGTERM to the runtime alone: it drains requests and jobs, then stops its MinIO.
KillMode=mixed
TimeoutStartSec=300
TimeoutStopSec=90
Restart=on-failure
RestartSec=5
RestartPreventExitStatus=2
PrivateDevices=yes
PrivateUsers=yes
{COMMON_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def agent_unit(o: UnitOptions) -> str:
    config_dir = o.agent_config.parent
    extra = "".join(f"ReadWritePaths={quote(str(p))}\n" for p in o.agent_paths)
    return f"""\
# Written by `cryospy service units`. CryoSpy's edge agent: records the cameras in its config, seals each
# clip and uploads it; clips wait in the spool while the server is away. Logs: journalctl -u {AGENT_UNIT}
[Unit]
Description=CryoSpy edge agent (records, seals and uploads camera clips)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={o.user}
Group={o.user}
SupplementaryGroups=video
ExecStart={command_line([*o.cryospy, "agent", "--config", str(o.agent_config)])}
Environment=PYTHONUNBUFFERED=1
WorkingDirectory={literal(str(config_dir))}
{writable_dir(config_dir)}{extra}# SIGTERM ends the current clip early (sealed and spooled); one last upload pass runs.
KillMode=mixed
TimeoutStopSec=120
Restart=on-failure
RestartSec=10
RestartPreventExitStatus=2
DevicePolicy=closed
DeviceAllow=char-video4linux rw
{COMMON_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def sysusers(o: UnitOptions) -> str:
    return (f"# Written by `cryospy service units`: the user CryoSpy's services run as.\n"
            f"# Install as /etc/sysusers.d/cryospy.conf, then run systemd-sysusers.\n"
            f'u {o.user} - "CryoSpy services" {o.data_dir} /usr/sbin/nologin\n')


def write_units(o: UnitOptions, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((SERVE_UNIT, serve_unit(o)), (AGENT_UNIT, agent_unit(o)), (SYSUSERS_FILE, sysusers(o))):
        path = out / name
        path.write_text(text)
        path.chmod(0o644)
        written.append(path)
    return written


def warnings(o: UnitOptions) -> list[str]:
    """What would stop the units from working on this machine, each with the fix."""
    found = []
    for what, path, fix in (("the cryospy command", o.cryospy[0], "python3 -m venv /opt/cryospy && "
                             "/opt/cryospy/bin/pip install cryospy-*.whl, then --cryospy /opt/cryospy/bin/cryospy"),
                            ("the MinIO binary", str(o.minio_bin or ""), f"install -m 0755 {o.minio_bin} "
                             "/usr/local/bin/minio, then --minio-bin /usr/local/bin/minio")):
        if path and any(PurePosixPath(path).is_relative_to(h) for h in HIDDEN_BY_PROTECT_HOME):
            found.append(f"{what} is at {path}, which the service cannot see (ProtectHome=yes, and another "
                         f"user's home is private anyway): {fix}")
    if o.minio_bin is None:
        found.append("no MinIO server binary was found, so the serve unit cannot start MinIO: run "
                     "`cryospy minio build` (builds it from source with Go) or pass --minio-bin")
    return found


def agent_spools(config: Path) -> tuple[Path, ...]:
    """Spool folders the agent config names outside its own folder (each camera may have its own); none if
    the config is missing or unreadable here (it may live on another machine)."""
    from cryospy.edge_agent.config import load_configs
    from cryospy.edge_agent.errors import AgentError

    try:
        configs = load_configs(config)
    except (AgentError, OSError):
        return ()
    outside = {c.spool_dir for c in configs if not c.spool_dir.is_relative_to(config.parent.resolve())}
    return tuple(sorted(outside))
