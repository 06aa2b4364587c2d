# syntax=docker/dockerfile:1
# Multi-stage build: compile the Cython accelerators in a builder with gcc, ship
# only the installed virtualenv on a slim runtime image, run as a non-root user.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY helix ./helix
RUN python -m venv /opt/helix \
 && /opt/helix/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/helix/bin/pip install --no-cache-dir . \
 && /opt/helix/bin/helix --version | grep -q "extensions: compiled"

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /app --create-home helix
COPY --from=build /opt/helix /opt/helix
COPY config/demo.yaml /app/demo.yaml
ENV PATH=/opt/helix/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HELIX_HOST=0.0.0.0 \
    HELIX_PORT=8080
WORKDIR /app
USER 10001
EXPOSE 8080
# Mount a config at /app/helix.yaml to use it; otherwise Helix runs in env-only mode.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HELIX_PORT', '8080'), timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/sh", "-c", "if [ -f /app/helix.yaml ]; then exec helix --config /app/helix.yaml \"$@\"; else exec helix \"$@\"; fi", "helix"]
