#!/bin/sh
# Read MinIO's root credentials and the webhook token from Compose secrets (files under /run/secrets, never
# environment variables in the compose file, so `docker inspect` shows none of them), then drop to the minio
# user. Root is needed only to read the secret files, which keep their owner and mode from the host.
#
# TLS (unless CRYOSPY_TLS=off): MinIO serves the certificate the tls-init service put in /certs (the volume
# minio-certs), and its webhook calls the runtime over HTTPS, verifying it with /certs/CAs/ca.crt.
set -eu
MINIO_ROOT_USER="$(read-secret minio_root_user)"
MINIO_ROOT_PASSWORD="$(read-secret minio_root_password)"
MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_CRYOSPY="$(read-secret webhook_token)"
export MINIO_ROOT_USER MINIO_ROOT_PASSWORD MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_CRYOSPY
scheme=https
if [ "${CRYOSPY_TLS:-on}" = off ]; then
  scheme=http
elif [ ! -s /certs/public.crt ]; then
  echo "minio: TLS is on but /certs/public.crt is missing: start the stack with docker compose (its tls-init" \
       "service makes the certificates), or set CRYOSPY_TLS=off in .env for plain HTTP behind a TLS proxy" >&2
  exit 2
else
  set -- --certs-dir /certs "$@"
fi
export MINIO_NOTIFY_WEBHOOK_ENDPOINT_CRYOSPY="$scheme://runtime:8480/_minio/events"
# A volume made by an older image may be root-owned: give it to minio (the top only; MinIO owns the rest).
[ "$(stat -c %u /data)" = 10002 ] || chown 10002:10002 /data
umask 077   # MinIO's IAM files (service identities' secrets), config and objects: private to its user
exec setpriv --reuid=10002 --regid=10002 --init-groups \
  minio server /data --address :9000 --console-address :9001 "$@"
