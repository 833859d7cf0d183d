# The CryoSpy runtime (and, with another command, the edge agent). ffmpeg comes from the imageio-ffmpeg wheel.
FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --home-dir /home/cryospy cryospy
WORKDIR /opt/cryospy
COPY pyproject.toml README.md ./
COPY cryospy ./cryospy
COPY functions ./functions
COPY edge_agent ./edge_agent
COPY web ./web
COPY infra ./infra
RUN pip install --no-cache-dir . && mkdir -p /data && chown cryospy /data
COPY infra/docker/runtime-entrypoint.sh /usr/local/bin/cryospy-runtime
USER cryospy
VOLUME ["/data"]
EXPOSE 8480
ENTRYPOINT ["cryospy-runtime"]
