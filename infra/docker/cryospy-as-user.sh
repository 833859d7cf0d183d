#!/bin/sh
# `cryospy` inside the image: always runs as the cryospy user, so that `docker compose exec runtime cryospy …`
# (root by default) never leaves root-owned files in /data that the runtime could not open afterwards.
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid=10001 --regid=10001 --init-groups env HOME=/home/cryospy /opt/cryospy/venv/bin/cryospy "$@"
fi
exec /opt/cryospy/venv/bin/cryospy "$@"
