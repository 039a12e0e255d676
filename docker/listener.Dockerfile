# syntax=docker/dockerfile:1
# The listener image: `cbactions mux` next to a real actions/runner installation whose
# Runner.Worker is cbactions' shim (jobs go to CodeBuild). The CDK app builds it from the
# repository root after `npm run build`; by hand:
#   docker build -f docker/listener.Dockerfile --build-arg RUNNER_VERSION="$(cat docker/runner-version)" .
# RUNNER_VERSION is the one build argument both images share (scripts/bump-runner-version.mjs).

ARG NODE_IMAGE=node:22-bookworm-slim

# preload.so (LD_PRELOAD: per-listener .runner/.credentials), its probe, the launcher
# every listener starts through (so listeners die with the mux), and the native
# Runner.Worker shim (docs/worker-shim.md), built with the same Makefile as `npm run build`.
FROM ${NODE_IMAGE} AS preload
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY src/preload/Makefile src/preload/preload.c src/preload/preload-probe.c src/preload/listener-launcher.c src/preload/worker-shim.c src/preload/
RUN make -C src/preload OUT=/out

FROM ${NODE_IMAGE}
ARG RUNNER_VERSION
ARG TARGETARCH
RUN test -n "${RUNNER_VERSION}" || { echo "build with --build-arg RUNNER_VERSION=<version> (see docker/runner-version)" >&2; exit 1; }

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# The runner, its checksum verified (install-runner.sh fails without a checksum line), and
# the libraries it needs (its own installdependencies.sh).
COPY docker/install-runner.sh docker/runner-checksums.txt /opt/cbactions/docker/
RUN /opt/cbactions/docker/install-runner.sh "${RUNNER_VERSION}" /actions-runner /opt/cbactions/docker/runner-checksums.txt \
 && /actions-runner/bin/installdependencies.sh \
 && rm -rf /var/lib/apt/lists/*

# cbactions laid out like a checkout: bin/cbactions loads dist/src/cli/main.js (here the
# single-file bundle), and the package root (package.json + src/preload) is where the
# worker shim and preload.so are looked up from.
COPY docker/image-package.json /opt/cbactions/package.json
COPY bin/cbactions /opt/cbactions/bin/cbactions
COPY dist/bundle/cbactions.mjs /opt/cbactions/dist/src/cli/main.js
COPY src/preload/Makefile src/preload/preload.c src/preload/preload-probe.c src/preload/listener-launcher.c src/preload/worker-shim.c /opt/cbactions/src/preload/
COPY --from=preload /out/ /opt/cbactions/dist/preload/
COPY docker/listener-entrypoint.sh /usr/local/bin/cbactions-listener-entrypoint

# Runner.Listener starts <root>/bin/Runner.Worker for each job: that becomes the native shim
# (from dist/preload/worker-shim above), with the script shim as Runner.Worker.fallback.
# Non-root: the runner refuses root without RUNNER_ALLOW_RUNASROOT, and nothing here needs it.
RUN chmod 0755 /opt/cbactions/bin/cbactions /usr/local/bin/cbactions-listener-entrypoint \
 && ln -s /opt/cbactions/bin/cbactions /usr/local/bin/cbactions \
 && cbactions install-worker /actions-runner \
 && useradd --create-home --uid 1001 --user-group --shell /bin/sh runner \
 && mkdir -p /var/lib/cbactions /etc/cbactions \
 && chown -R runner:runner /actions-runner /var/lib/cbactions /etc/cbactions

ENV CBACTIONS_RUNNER_ROOT=/actions-runner \
    CBACTIONS_RUNNER_VERSION=${RUNNER_VERSION} \
    CBACTIONS_CONFIG=/etc/cbactions/config.json
USER runner
WORKDIR /actions-runner
# SIGTERM reaches the mux through the init process ECS adds (initProcessEnabled).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cbactions-listener-entrypoint"]
CMD ["mux", "--config", "/etc/cbactions/config.json"]
