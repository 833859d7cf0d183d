#!/bin/sh
# The runtime container. Secrets are Compose secrets (files under /run/secrets), never environment variables.
#
# First start: create the deployment in /data with MinIO's root credentials and the webhook token from the
# secrets, so the runtime and MinIO share them. With a non-empty admin_passphrase secret the key store is made
# and the runtime starts unlocked; with an empty one the runtime offers first-run setup in the browser (/setup,
# one-time code in /data/setup-code.txt) instead of exiting. Later starts reuse /data.
#
# TLS (unless CRYOSPY_TLS=off): the tls-init service issued the runtime's certificate into /tls (the volume
# runtime-tls, read-only here, with the CA certificate but not its key); the deployment reads it from there
# (`setup --tls-dir`), talks to MinIO at https://minio:9000 and gives agent configs the CA. Cameras reach the
# stack at CRYOSPY_HOST unless CRYOSPY_PUBLIC_API_URL / CRYOSPY_MINIO_PUBLIC_URL say otherwise.
set -eu
secret_file() { [ -s "/run/secrets/$1" ] && echo "/run/secrets/$1" || true; }
[ "$(stat -c %u /data)" = 10001 ] || chown 10001:10001 /data   # a volume made by an older image
passphrase="$(secret_file admin_passphrase)"
if [ "${CRYOSPY_TLS:-on}" = off ]; then scheme=http tls_flag=--no-tls; else scheme=https tls_flag="--tls-dir=/tls"; fi
if [ ! -f /data/deployment.json ]; then
  : "${CRYOSPY_HOST:?set it in .env: this server's LAN address or name, the one cameras use}"
  case "$CRYOSPY_HOST" in *:*) url_host="[$CRYOSPY_HOST]" ;; *) url_host="$CRYOSPY_HOST" ;; esac
  api_url="${CRYOSPY_PUBLIC_API_URL:-$scheme://$url_host:${CRYOSPY_RUNTIME_PORT:-8480}}"
  minio_url="${CRYOSPY_MINIO_PUBLIC_URL:-$scheme://$url_host:${CRYOSPY_MINIO_PORT:-9000}}"
  MINIO_ROOT_USER="$(read-secret minio_root_user)"
  MINIO_ROOT_PASSWORD="$(read-secret minio_root_password)"
  CRYOSPY_WEBHOOK_TOKEN="$(read-secret webhook_token)"
  # Inside the container the runtime is https://127.0.0.1:8480 (the CLI, the healthcheck) and listens on every
  # interface of the container; CRYOSPY_HOST and CRYOSPY_TLS_NAMES are names it answers to.
  set -- setup --from-env --host 127.0.0.1 "$tls_flag" --minio-url "$scheme://minio:9000" --bind-host 0.0.0.0 \
    --public-api-url "$api_url" --minio-public-url "$minio_url" --tls-name "$CRYOSPY_HOST"
  for name in $(echo "${CRYOSPY_TLS_NAMES:-}" | tr ',' ' '); do set -- "$@" --tls-name "$name"; done
  # Only this one process sees them in its environment (`setup --from-env` stores them in /data, 0600).
  if [ -n "$passphrase" ]; then
    MINIO_ROOT_USER="$MINIO_ROOT_USER" MINIO_ROOT_PASSWORD="$MINIO_ROOT_PASSWORD" \
      CRYOSPY_WEBHOOK_TOKEN="$CRYOSPY_WEBHOOK_TOKEN" cryospy "$@" --passphrase-file - <"$passphrase"
  else
    MINIO_ROOT_USER="$MINIO_ROOT_USER" MINIO_ROOT_PASSWORD="$MINIO_ROOT_PASSWORD" \
      CRYOSPY_WEBHOOK_TOKEN="$CRYOSPY_WEBHOOK_TOKEN" cryospy "$@" --browser
  fi
elif [ "$(/opt/cryospy/venv/bin/python -c 'import json; print(json.load(open("/data/deployment.json")).get("tls", False))')" \
       != "$([ "$scheme" = https ] && echo True || echo False)" ]; then
  echo "cryospy runtime: CRYOSPY_TLS=${CRYOSPY_TLS:-on} in .env, but the deployment in the cryospy-data volume was" \
       "set up the other way: put CRYOSPY_TLS back as it was at the first start (MinIO follows the same setting)" >&2
  exit 2
fi
if [ -n "$passphrase" ] && [ -f /data/keys.json ]; then
  exec cryospy serve --external-minio --passphrase-file - <"$passphrase"
fi
exec cryospy serve --external-minio
