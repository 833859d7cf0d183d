# The CryoSpy runtime and edge agent (one image, two entrypoints). ffmpeg comes from the imageio-ffmpeg wheel.
# hls.js comes from the npm registry (package-lock.json pins it) and is served by the dashboard itself.
#
# Build arguments (the defaults are the upstream images a user pulls):
#   BASE_IMAGE  a Debian bookworm image; Python 3.11 is installed from Debian unless it has python3 already
#   NODE_IMAGE  where `npm ci` runs for the player asset
#   ASSETS      npm (default: install hls.js in NODE_IMAGE) or prebuilt (take web/vendor from the context,
#               as `./dev` makes it from the same registry package; the test suite uses it: no registry images)
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim
ARG ASSETS=npm

FROM ${NODE_IMAGE} AS assets-npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && mkdir -p /vendor \
    && cp node_modules/hls.js/dist/hls.light.min.js /vendor/ && gzip -kf9 /vendor/hls.light.min.js

FROM scratch AS assets-prebuilt
COPY web/vendor/hls.light.min.js web/vendor/hls.light.min.js.gz /vendor/

FROM assets-${ASSETS} AS assets

FROM ${BASE_IMAGE}
RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
      && rm -rf /var/lib/apt/lists/*; fi \
    && groupadd --system --gid 10001 cryospy \
    && useradd --system --uid 10001 --gid cryospy --groups video --create-home --home-dir /home/cryospy \
       --shell /usr/sbin/nologin cryospy \
    && mkdir -p /data /spool && chown cryospy:cryospy /data /spool && chmod 0700 /data /spool \
    && python3 -m venv /opt/cryospy/venv
WORKDIR /opt/cryospy/src
COPY pyproject.toml setup.py README.md ./
# Dependencies first, in their own layer: a change to CryoSpy's code does not reinstall them.
RUN --mount=type=cache,target=/root/.cache/pip /opt/cryospy/venv/bin/python -c "import tomllib; \
print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >/tmp/requirements.txt \
    && /opt/cryospy/venv/bin/pip install --progress-bar off -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY cryospy ./cryospy
COPY functions ./functions
COPY edge_agent ./edge_agent
COPY web ./web
COPY --from=assets /vendor ./web/vendor
COPY infra ./infra
RUN --mount=type=cache,target=/root/.cache/pip /opt/cryospy/venv/bin/pip install --progress-bar off --no-deps . \
    && rm -rf /opt/cryospy/src
WORKDIR /
COPY infra/docker/cryospy-as-user.sh /usr/local/bin/cryospy
COPY infra/docker/runtime-entrypoint.sh /usr/local/bin/cryospy-runtime
COPY infra/docker/read-secret.sh /usr/local/bin/read-secret
COPY infra/docker/agent-entrypoint.sh /usr/local/bin/cryospy-agent
COPY infra/docker/agent-health.py /usr/local/bin/cryospy-agent-health
COPY infra/docker/runtime-health.py /usr/local/bin/cryospy-runtime-health
COPY infra/docker/tls-init.py /usr/local/bin/cryospy-tls-init
# `docker compose exec runtime cryospy …` finds the deployment without --data-dir.
ENV CRYOSPY_DATA_DIR=/data
# New named volumes copy these directories' owner (cryospy) from the image.
VOLUME ["/data", "/spool"]
EXPOSE 8480
# The entrypoints start as root only to read Compose secrets (tls-init: to give each volume its owner), then
# run CryoSpy as the cryospy user.
ENTRYPOINT ["cryospy-runtime"]
