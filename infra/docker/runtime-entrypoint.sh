#!/bin/sh
# First start: create the deployment from the env file's values, so the runtime and MinIO share the root
# credentials and the webhook token. Later starts reuse /data.
set -eu
if [ ! -f /data/deployment.json ]; then
  cryospy setup --data-dir /data --from-env --minio-url http://minio:9000 --bind-host 0.0.0.0 \
    --public-api-url "${CRYOSPY_PUBLIC_API_URL:-}" --minio-public-url "${CRYOSPY_MINIO_PUBLIC_URL:-}"
fi
exec cryospy serve --data-dir /data --external-minio
