#!/bin/sh
# MinIO's healthcheck: live over HTTPS, verified with the deployment's CA (never curl -k), or over plain HTTP
# when CRYOSPY_TLS=off (the same rule as minio-entrypoint).
if [ "${CRYOSPY_TLS:-on}" = off ]; then
  exec curl -fsS http://127.0.0.1:9000/minio/health/live
fi
exec curl -fsS --cacert /certs/CAs/ca.crt https://127.0.0.1:9000/minio/health/live
