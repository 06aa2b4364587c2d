# syntax=docker/dockerfile:1
# Helix image: build a relocatable /opt/helix tree (interpreter + stdlib + Helix with its
# compiled Cython accelerators + the shared libraries they need) in a builder with gcc,
# then ship only that tree on debian:bookworm-slim, run as a non-root user.
#
#   docker build -t helix .
#   docker run -p 8080:8080 -e OPENAI_API_KEY=sk-... helix                        # env-only
#   docker run -p 8080:8080 -v "$PWD/helix.yaml:/app/helix.yaml:ro" helix          # config file
#
# Sidecar: /usr/local/bin/helix is the same Helix as ONE file (infrastructure/
# build-binary.sh: a self-extracting bundle that needs /bin/sh, tar, gzip and glibc >= 2.36,
# i.e. Debian 12 / Ubuntu 22.10 or newer, and no Python), so the README's line works as is:
#   COPY --from=helicone/helix:latest /usr/local/bin/helix /usr/local/bin/helix
# (it unpacks itself once into ~/.cache/helix or $TMPDIR).  Or copy the tree itself:
#   COPY --from=helix /opt/helix /opt/helix
# Expected size: ~135 MB uncompressed (debian:bookworm-slim ~75 MB + /opt/helix ~58 MB);
# see docs/DEPLOY.md for how that was measured.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# gcc/libc6-dev compile helix/_fast; binutils (strip) trims the bundle.  Debian's
# bookworm point releases keep these packages ABI-stable, so they are not version-pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY infrastructure/build-bundle.sh /usr/local/bin/build-bundle
COPY infrastructure/build-binary.sh /usr/local/bin/build-binary
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY helix ./helix
# build-bundle pip-installs "." (setup.py compiles helix/_fast with Cython) into the tree,
# then refuses an image whose accelerators did not compile.
RUN build-bundle /opt/helix . \
 && /opt/helix/bin/helix --version | grep -q "extensions: compiled" \
 && HELIX_BUNDLE_DIR=/opt/helix build-binary /usr/local/bin/helix

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: the system trust store, next to certifi's (corporate CAs go there).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 helix \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --create-home helix
COPY --from=build /opt/helix /opt/helix
COPY --from=build /usr/local/bin/helix /usr/local/bin/helix
COPY config/demo.yaml /app/demo.yaml
ENV PATH=/opt/helix/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HELIX_HOST=0.0.0.0 \
    HELIX_PORT=8080 \
    HELIX_STATE_DIR=/app/state
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/opt/helix/bin/python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HELIX_PORT', '8080'), timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
# A config mounted at /app/helix.yaml is used unless HELIX_CONFIG says otherwise; without
# one Helix runs env-only.  Arguments go to helix: `docker run helix check`, `... mock`, `... try`.
ENTRYPOINT ["/bin/sh", "-c", "if [ -z \"${HELIX_CONFIG:-}\" ] && [ -f /app/helix.yaml ]; then HELIX_CONFIG=/app/helix.yaml; export HELIX_CONFIG; fi; exec /opt/helix/bin/helix \"$@\"", "helix"]
