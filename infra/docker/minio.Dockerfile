# MinIO built from source: upstream publishes no current images for the community edition.
# Stage 1 compiles the pinned module version (the same one `cryospy` builds locally); stage 2 is a small
# runtime image with just the binary and CA certificates.
FROM golang:1.26-bookworm AS build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath github.com/minio/minio@${MINIO_VERSION}

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data minio
COPY --from=build /out/minio /usr/local/bin/minio
USER minio
VOLUME ["/data"]
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --retries=30 CMD curl -fsS http://127.0.0.1:9000/minio/health/cluster || exit 1
# umask 077: MinIO's IAM files (service identities' secrets), config and objects are private to its user.
ENTRYPOINT ["/bin/sh", "-c", "umask 077 && exec minio server /data --address :9000 --console-address :9001"]
