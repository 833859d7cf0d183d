#!/bin/sh
# The edge agent container. Its config (written by `cryospy devices create`, with the camera's secret) is the
# Compose secret agent_config; it is copied once per start into the agent's own volume (0600, cryospy), where
# relative spool_dir entries resolve, so the spool and signing state survive restarts.
set -eu
if [ ! -s /run/secrets/agent_config ]; then
  echo "cryospy agent: the secret agent_config is missing or empty: write it with" \
       "docker compose exec runtime cryospy devices create CAMERA --out /data/agent.json" >&2
  exit 2
fi
[ "$(stat -c %u /spool)" = 10001 ] || chown 10001:10001 /spool
install -m 0600 -o 10001 -g 10001 /run/secrets/agent_config /spool/agent.json
exec cryospy agent --config /spool/agent.json "$@"
