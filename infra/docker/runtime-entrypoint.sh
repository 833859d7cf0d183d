#!/bin/sh
# The runtime container. Secrets are Compose secrets (files under /run/secrets), never environment variables.
#
# First start: create the deployment in /data with MinIO's root credentials and the webhook token from the
# secrets, so the runtime and MinIO share them. With a non-empty admin_passphrase secret the key store is made
# and the runtime starts unlocked; with an empty one the runtime offers first-run setup in the browser (/setup,
# one-time code in /data/setup-code.txt) instead of exiting. Later starts reuse /data.
set -eu
secret_file() { [ -s "/run/secrets/$1" ] && echo "/run/secrets/$1" || true; }
[ "$(stat -c %u /data)" = 10001 ] || chown 10001:10001 /data   # a volume made by an older image
passphrase="$(secret_file admin_passphrase)"
if [ ! -f /data/deployment.json ]; then
  : "${CRYOSPY_PUBLIC_API_URL:?set it in .env: the URL cameras use to reach the runtime}"
  : "${CRYOSPY_MINIO_PUBLIC_URL:?set it in .env: the URL cameras use to reach MinIO}"
  MINIO_ROOT_USER="$(read-secret minio_root_user)"
  MINIO_ROOT_PASSWORD="$(read-secret minio_root_password)"
  CRYOSPY_WEBHOOK_TOKEN="$(read-secret webhook_token)"
  # Plain HTTP inside the Compose network for now (MinIO's container has no certificate yet): put the stack
  # behind a reverse proxy that does TLS (docs/tls.md) before cameras use it across the LAN.
  set -- setup --from-env --host 127.0.0.1 --no-tls --minio-url http://minio:9000 --bind-host 0.0.0.0 \
    --public-api-url "$CRYOSPY_PUBLIC_API_URL" --minio-public-url "$CRYOSPY_MINIO_PUBLIC_URL"
  # Only this one process sees them in its environment (`setup --from-env` stores them in /data, 0600).
  if [ -n "$passphrase" ]; then
    MINIO_ROOT_USER="$MINIO_ROOT_USER" MINIO_ROOT_PASSWORD="$MINIO_ROOT_PASSWORD" \
      CRYOSPY_WEBHOOK_TOKEN="$CRYOSPY_WEBHOOK_TOKEN" cryospy "$@" --passphrase-file - <"$passphrase"
  else
    MINIO_ROOT_USER="$MINIO_ROOT_USER" MINIO_ROOT_PASSWORD="$MINIO_ROOT_PASSWORD" \
      CRYOSPY_WEBHOOK_TOKEN="$CRYOSPY_WEBHOOK_TOKEN" cryospy "$@" --browser
  fi
fi
if [ -n "$passphrase" ] && [ -f /data/keys.json ]; then
  exec cryospy serve --external-minio --passphrase-file - <"$passphrase"
fi
exec cryospy serve --external-minio
