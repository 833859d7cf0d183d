# The CryoSpy runtime (and, with another command, the edge agent). ffmpeg comes from the imageio-ffmpeg wheel.
# hls.js is installed from the npm registry in a build stage and served by the dashboard itself.
FROM node:20-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && mkdir -p /vendor \
    && cp node_modules/hls.js/dist/hls.light.min.js /vendor/ && gzip -kf9 /vendor/hls.light.min.js

FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --home-dir /home/cryospy cryospy
WORKDIR /opt/cryospy
COPY pyproject.toml README.md ./
COPY cryospy ./cryospy
COPY functions ./functions
COPY edge_agent ./edge_agent
COPY web ./web
COPY --from=assets /vendor ./web/vendor
COPY infra ./infra
RUN pip install --no-cache-dir . && mkdir -p /data && chown cryospy /data
COPY infra/docker/runtime-entrypoint.sh /usr/local/bin/cryospy-runtime
USER cryospy
VOLUME ["/data"]
EXPOSE 8480
ENTRYPOINT ["cryospy-runtime"]
