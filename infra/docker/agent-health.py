"""The agent container's healthcheck: healthy while the runtime named in its config answers from here."""

import json
import ssl
import sys
import urllib.request

with open("/spool/agent.json") as file:
    doc = json.load(file)
camera = doc if "server_url" in doc else {**doc, **doc["cameras"][0]}
bundle = camera.get("ca_bundle") or ""   # PEM text (what `cryospy devices create` writes) or a file path
if bundle.lstrip().startswith("-----BEGIN"):
    context = ssl.create_default_context(cadata=bundle)
else:
    context = ssl.create_default_context(cafile=bundle or None)
try:
    urllib.request.urlopen(camera["server_url"].rstrip("/") + "/health", timeout=5, context=context).read()
except OSError as exc:
    sys.exit(f"the runtime at {camera['server_url']} does not answer: {exc}")
