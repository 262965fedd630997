# The llmmeter collector image: `llmmeter serve` on OTLP/gRPC :4317 and OTLP/HTTP + REST API + /metrics :4318.
#
#   docker build -t llmmeter-collector .
#   docker build --build-arg LLMMETER_EXTRAS=collector,archive -t llmmeter-collector .   # + Parquet/S3 archive
#
# Base pinned by full tag (Python 3.12.8 on Debian bookworm, slim). To pin by digest as well, replace the
# value with python:3.12.8-slim-bookworm@sha256:<digest from `docker buildx imagetools inspect`>.
ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for the collector's OTLP attribute reader (hatch_build.py); only this stage has it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Reproducible: every dependency (and the build backend) comes from a lock file with hashes
# (requirements/*.lock, `make lock`); pip refuses anything whose hash differs. The lock is chosen by the extras:
# collector -> requirements/collector.lock, collector,archive -> requirements/collector-archive.lock.
COPY requirements ./requirements
COPY pyproject.toml README.md hatch_build.py ./
COPY instrumentation ./instrumentation
COPY collector ./collector
# Only the collector extra (which includes the CLI): no SDK test tools, no provider SDKs.
ARG LLMMETER_EXTRAS=collector
RUN lock="requirements/$(echo "${LLMMETER_EXTRAS}" | tr , -).lock" \
 && { [ -f "$lock" ] || { echo "no lock file $lock for LLMMETER_EXTRAS=${LLMMETER_EXTRAS}: run make lock" >&2; exit 1; }; } \
 && python -m venv /opt/llmmeter \
 && /opt/llmmeter/bin/pip install --require-hashes --no-deps -r requirements/build.lock \
 && /opt/llmmeter/bin/pip install --require-hashes --no-deps -r "$lock" \
 && /opt/llmmeter/bin/pip install --no-deps --no-build-isolation ".[${LLMMETER_EXTRAS}]" \
 && /opt/llmmeter/bin/pip check \
 && find /opt/llmmeter -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 llmmeter \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/llmmeter --shell /usr/sbin/nologin llmmeter \
 && mkdir -p /var/lib/llmmeter \
 && chown 10001:10001 /var/lib/llmmeter
COPY --from=build /opt/llmmeter /opt/llmmeter
ENV PATH=/opt/llmmeter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMMETER_HOST=0.0.0.0 \
    LLMMETER_DATA_DIR=/var/lib/llmmeter
USER 10001:10001
WORKDIR /var/lib/llmmeter
VOLUME ["/var/lib/llmmeter"]
EXPOSE 4317 4318
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LLMMETER_HTTP_PORT', '4318'), timeout=4)"]
ENTRYPOINT ["llmmeter"]
CMD ["serve"]
