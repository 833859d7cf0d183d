"""The runtime container's healthcheck: /health answers at the deployment's own URL, over HTTPS verified with
the deployment's CA when it uses TLS (never without verification), over plain HTTP with CRYOSPY_TLS=off."""

import ssl
import sys
import urllib.request
from pathlib import Path

from cryospy.infra.deployment import load
from cryospy.infra.errors import InfraError

try:
    dep = load(Path("/data"))
except InfraError as exc:        # the first start is still setting up
    sys.exit(str(exc))
context = ssl.create_default_context(cafile=dep.ca_file) if dep.ca_file else None
try:
    urllib.request.urlopen(f"{dep.runtime_url}/health", timeout=3, context=context).read()
except OSError as exc:
    sys.exit(f"the runtime at {dep.runtime_url} does not answer: {exc}")
