# syntax=docker/dockerfile:1
# The CodeBuild image: each build runs one GitHub Actions job with the real Runner.Worker
# (buildspec.yml: `cbactions entrypoint`). Same actions/runner version as the listener
# image (the shared RUNNER_VERSION build argument). By hand, from the repository root
# after `npm run build`:
#   docker build -f docker/build.Dockerfile --build-arg RUNNER_VERSION="$(cat docker/runner-version)" .

ARG NODE_IMAGE=node:22-bookworm
FROM ${NODE_IMAGE}
ARG RUNNER_VERSION
ARG TARGETARCH
RUN test -n "${RUNNER_VERSION}" || { echo "build with --build-arg RUNNER_VERSION=<version> (see docker/runner-version)" >&2; exit 1; }

# Tools jobs commonly expect on a runner.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates curl git git-lfs gnupg iptables jq sudo unzip xz-utils zip zstd \
 && rm -rf /var/lib/apt/lists/*

# Docker Engine from Docker's repository (key checked against its published fingerprint):
# `container:` jobs and service containers need a daemon, started per build by
# cbactions-start-dockerd when the pool is privileged.
RUN install -m 0755 -d /etc/apt/keyrings \
 && curl -fsSL https://download.docker.com/linux/debian/gpg -o /etc/apt/keyrings/docker.asc \
 && gpg --show-keys --with-colons /etc/apt/keyrings/docker.asc | grep -q '^fpr:::::::::9DC858229FC7DD38854AE2D88D81803C0EBFCD88:$' \
 && echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable" >/etc/apt/sources.list.d/docker.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin \
 && rm -rf /var/lib/apt/lists/*

COPY docker/install-runner.sh docker/runner-checksums.txt /opt/cbactions/docker/
RUN /opt/cbactions/docker/install-runner.sh "${RUNNER_VERSION}" /actions-runner /opt/cbactions/docker/runner-checksums.txt \
 && /actions-runner/bin/installdependencies.sh \
 && rm -rf /var/lib/apt/lists/*

# cbactions laid out like a checkout (see listener.Dockerfile). No worker shim here: the
# build runs the runner's own Runner.Worker.
COPY docker/image-package.json /opt/cbactions/package.json
COPY bin/cbactions /opt/cbactions/bin/cbactions
COPY dist/bundle/cbactions.mjs /opt/cbactions/dist/src/cli/main.js
COPY docker/start-dockerd.sh /usr/local/bin/cbactions-start-dockerd
RUN chmod 0755 /opt/cbactions/bin/cbactions /usr/local/bin/cbactions-start-dockerd \
 && ln -s /opt/cbactions/bin/cbactions /usr/local/bin/cbactions

# CodeBuild runs builds as root; the runner's worker does not object, and dockerd needs it.
ENV CBACTIONS_RUNNER_ROOT=/actions-runner \
    CBACTIONS_RUNNER_VERSION=${RUNNER_VERSION} \
    CBACTIONS_RUNNER_CHECKSUMS=/opt/cbactions/docker/runner-checksums.txt
