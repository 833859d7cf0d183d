# MinIO built from source: upstream publishes no current images for the community edition.
# Stage 1 compiles the pinned module version (the same one `cryospy minio build` builds locally); stage 2 is a
# small image with the binary, CA certificates and curl for the healthcheck.
# GO_IMAGE and BASE_IMAGE default to the upstream images; the test suite passes locally made ones (no registry).
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOBIN=/out go install -trimpath github.com/minio/minio@${MINIO_VERSION}

FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10002 minio \
    && useradd --system --uid 10002 --gid minio --home-dir /data --no-create-home --shell /usr/sbin/nologin minio \
    && mkdir -p /data && chown minio:minio /data && chmod 0700 /data
COPY --from=build /out/minio /usr/local/bin/minio
COPY infra/docker/minio-entrypoint.sh /usr/local/bin/minio-entrypoint
COPY infra/docker/read-secret.sh /usr/local/bin/read-secret
COPY infra/docker/minio-health.sh /usr/local/bin/minio-health
# A new named volume copies /data's owner (minio) from here. /certs: the certificate (docker-compose.yml mounts
# the minio-certs volume there, made by its tls-init service).
VOLUME ["/data"]
EXPOSE 9000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=30 CMD minio-health || exit 1
# Starts as root only to read the Compose secrets, then runs MinIO as the minio user.
ENTRYPOINT ["minio-entrypoint"]
