# aggregator: feed aggregation daemon. Multi-stage: build a venv, copy it into a slim runtime.
# BASE_IMAGE must provide python3 with venv (python:3.12-slim, or a local Debian base).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY aggregator ./aggregator
RUN /opt/venv/bin/pip install ".[postgres]"

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AGGREGATOR_CONFIG=/app/config/aggregator.toml \
    AGGREGATOR_DATABASE_URL=sqlite:////data/aggregator.db \
    AGGREGATOR_SERVER_HOST=0.0.0.0 \
    AGGREGATOR_SERVER_PORT=8080 \
    AGGREGATOR_LOG_FORMAT=json
COPY --from=build /opt/venv /opt/venv
COPY config /app/config
WORKDIR /app
RUN mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AGGREGATOR_SERVER_PORT', '8080'), timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["aggregator"]
CMD ["run"]
